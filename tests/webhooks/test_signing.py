"""Signatures that any Standard Webhooks implementation accepts; secrets in the standard form."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from culm.errors import InvalidInput
from culm.webhooks.signing import check_secret, headers, new_secret, signature


class TestSignature:
    def test_the_standardwebhooks_package_verifies_what_culm_signs(self) -> None:
        secret = new_secret()
        body = b'{"type":"run.completed","data":{"output":"\xc3\xa9t\xc3\xa9"}}'
        now = int(datetime.now(UTC).timestamp())
        signed = headers(secret, "msg_1", now, body)
        assert Webhook(secret).verify(body, signed) == {
            "type": "run.completed",
            "data": {"output": "été"},
        }

    def test_it_matches_the_reference_signature(self) -> None:
        """The example of the Standard Webhooks specification, byte for byte."""
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        body = b'{"test": 2432232314}'
        expected = Webhook(secret).sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek", datetime.fromtimestamp(1614265330, UTC), body.decode()
        )
        assert signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected
        assert expected == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

    def test_a_changed_body_id_or_secret_fails_verification(self) -> None:
        secret = new_secret()
        now = int(datetime.now(UTC).timestamp())
        signed = headers(secret, "msg_1", now, b"{}")
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(b'{"a":1}', signed)
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(b"{}", {**signed, "webhook-id": "msg_2"})
        with pytest.raises(WebhookVerificationError):
            Webhook(new_secret()).verify(b"{}", signed)


class TestSecrets:
    def test_new_secrets_are_32_random_bytes(self) -> None:
        made = {new_secret() for _ in range(10)}
        assert len(made) == 10
        for secret in made:
            assert check_secret(secret) == secret
            assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32

    @pytest.mark.parametrize(
        "secret",
        [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_",
            "whsec_c2hvcnQ=",
            "whsec_" + base64.b64encode(b"x" * 65).decode(),
            "whsec_not base64!",
        ],
    )
    def test_malformed_secrets_are_refused(self, secret: str) -> None:
        with pytest.raises(InvalidInput):
            check_secret(secret)
