"""The token budget: checked before each call against the prompt it would send."""

from __future__ import annotations

from culm.agent.budget import TokenBudget
from culm.llm import ToolSpec, Usage

MESSAGES = [{"role": "user", "content": "x" * 400}]  # about 100 tokens


def test_without_a_limit_everything_fits() -> None:
    budget = TokenBudget(None)
    budget.record(Usage(10**6, 10**6), 1)
    assert budget.allows(10**9)
    assert budget.left is None and budget.completion_cap(5) is None


def test_the_first_prompt_is_estimated_from_its_text() -> None:
    budget = TokenBudget(1000)
    tool = ToolSpec("t", "", {"type": "object"})
    prompt = budget.next_prompt(MESSAGES, [tool])
    assert 100 <= prompt < 120
    assert budget.completion_cap(prompt) == 1000 - prompt


def test_later_prompts_start_from_what_the_last_call_counted() -> None:
    budget = TokenBudget(1000)
    budget.record(Usage(300, 50), messages_sent=1)
    assert budget.left == 650
    grown = [
        *MESSAGES,
        {"role": "assistant", "content": "..."},
        {"role": "tool", "content": "y" * 40},
    ]
    # 350 in context already, plus the tool result (the assistant reply is counted in 350)
    assert 360 <= budget.next_prompt(grown, []) < 370


def test_a_call_that_leaves_no_room_is_refused() -> None:
    budget = TokenBudget(500)
    budget.record(Usage(300, 50), 1)
    assert budget.allows(149)
    assert budget.completion_cap(149) == 1
    assert not budget.allows(150)
