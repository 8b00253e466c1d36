"""A bounded summary of a value, for events that mention what another run produced.

A parent's ``child.completed`` says what the child returned without copying an output of
any size into the parent's stream: the whole output stays on the child's run.
"""

from __future__ import annotations

from typing import Any

import pydantic_core

SUMMARY_CHARS = 500


def summarize(value: Any, limit: int = SUMMARY_CHARS) -> str | None:
    """``value`` as text (a string as it is, anything else as JSON), cut to ``limit``
    characters with an ellipsis; None stays None."""
    if value is None:
        return None
    text = value if isinstance(value, str) else pydantic_core.to_json(value, fallback=str).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"
