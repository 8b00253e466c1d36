"""Signed webhooks (Standard Webhooks) from a durable outbox filled from the event log.

``service.Webhooks`` is what the API uses; ``dispatcher.Dispatcher`` fills the outbox and
delivers; ``delivery`` is one attempt and the retry policy; ``signing`` the signatures;
``address`` where a webhook may point; ``patterns`` which events an endpoint receives.
"""

from __future__ import annotations

from culm.webhooks.service import Created, Webhooks

__all__ = ["Created", "Webhooks"]
