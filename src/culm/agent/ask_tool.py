"""``ask_user``: the built-in tool through which a model agent asks a person a question.

The call never runs a function: the run waits (``run.waiting`` of kind ``question``) and the
person's answer becomes the call's result.
"""

from __future__ import annotations

from culm.agent.tools import Tool


def _ask_user(question: str) -> str:
    """Ask the user a question and wait for the answer. Use it only when you need
    something that only the user can tell you.

    Args:
        question: The question, complete and short.
    """
    raise RuntimeError("ask_user is answered by a person, never called")


ask_user = Tool(_ask_user, name="ask_user")
ask_user.asks = True
