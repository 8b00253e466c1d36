"""Agents the dashboard tests run: each emits the events a model agent does (rounds,
streamed text, tool calls, budget, children), at a pace the test chooses."""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

import culm
from culm.agent.budget import Budget
from culm.llm.base import ModelRequest
from culm.testing import Reply, ScriptedModel, call

app = culm.App()

BUDGET = 20_000


class Talk(BaseModel):
    """How the run talks."""

    topic: str = Field("the weather", description="What the text is about.")
    rounds: int = Field(2, ge=1, le=1000, description="Rounds of text and a tool call.")
    words: int = Field(12, ge=0, le=10_000, description="Words streamed per round.")
    delay: float = Field(0.05, ge=0, le=5, description="Seconds between words.")
    fail_tool: bool = Field(False, description="Make the tool call of the last round fail.")
    children: int = Field(0, ge=0, le=5, description="Child runs to spawn in the first round.")
    child: Literal["echo", "waiter"] = Field("echo", description="The agent of the child runs.")
    gate: str = Field(
        "", max_length=40, description="A gate the first tool call waits at (a test opens it)."
    )
    mood: Literal["calm", "busy"] = "calm"


async def _talk(run: culm.RunContext, talk: Talk, *, hold: bool = False) -> dict[str, object]:
    used = 0
    for number in range(1, talk.rounds + 1):
        await run.emit("round.started", {"round": number})
        text = ""
        for i in range(talk.words):
            piece = f" {talk.topic.split()[-1] if i % 5 == 4 else 'word'}{i}"
            text += piece
            await run.emit("message.delta", {"text": piece})
            if talk.delay:
                await run.sleep(talk.delay)
        await run.emit("message.completed", {"text": text})
        used += 40 + talk.words * 2
        await run.emit(
            "budget.updated",
            {
                "usage": {
                    "prompt_tokens": used // 2,
                    "completion_tokens": used - used // 2,
                    "total_tokens": used,
                },
                "budget_left": BUDGET - used,
            },
        )
        call_id = f"call_{number}"
        await run.emit(
            "tool.started",
            {"name": "lookup", "call_id": call_id, "arguments": {"query": talk.topic, "n": number}},
        )
        if talk.gate and number == 1:
            await _wait_for_gate(run, talk.gate)
        if talk.fail_tool and number == talk.rounds:
            await run.emit(
                "tool.failed", {"name": "lookup", "call_id": call_id, "error": "lookup timed out"}
            )
        else:
            await run.emit(
                "tool.completed",
                {
                    "name": "lookup",
                    "call_id": call_id,
                    "result": {"found": number, "of": talk.topic},
                },
            )
        if number == 1:
            for _ in range(talk.children):
                await run.spawn(
                    talk.child, f"child of {run.run_id}" if talk.child == "echo" else None
                )
        await run.emit("round.completed", {"round": number})
    if hold:
        await run.sleep(3600)
    return {"text": f"talked about {talk.topic}", "rounds": talk.rounds}


@app.agent
async def talker(run: culm.RunContext, input: Talk) -> dict[str, object]:
    """Streams text in rounds, with a tool call each round, like a model agent."""
    return await _talk(run, input)


@app.agent
async def lingerer(run: culm.RunContext, input: Talk) -> dict[str, object]:
    """Talks like ``talker``, then waits at a safe point until cancelled."""
    return await _talk(run, input, hold=True)


@app.agent
async def restarter(run: culm.RunContext, input: None = None) -> str:
    """A round whose model call is made again: the first attempt's text is to be struck."""
    await run.emit("round.started", {"round": 1})
    for word in ("first", "attempt", "text"):
        await run.emit("message.delta", {"text": f"{word} "})
    # as a resumed model agent says it: the round's start is the last event that stands
    await run.emit("round.restarted", {"round": 1, "attempt": 2, "discard_after_seq": 3})
    for word in ("second", "attempt"):
        await run.emit("message.delta", {"text": f"{word} "})
    await run.emit("message.completed", {"text": "second attempt "})
    await run.emit("round.completed", {"round": 1})
    return "ok"


@app.agent
async def retrier(run: culm.RunContext, input: None = None) -> str:
    """A model stream that broke and was retried: a delta with ``reset`` voids the text."""
    await run.emit("round.started", {"round": 1})
    await run.emit("message.delta", {"text": "broken "})
    await run.emit("message.delta", {"text": "stream "})
    await run.emit("message.delta", {"text": "", "reset": True})
    await run.emit("message.delta", {"text": "whole answer"})
    await run.emit("message.completed", {"text": "whole answer"})
    await run.emit("round.completed", {"round": 1})
    return "ok"


@app.agent
async def flood(run: culm.RunContext, input: int = 50_000) -> int:
    """Emits about ``input`` events in model-shaped rounds (each: 1 start, 94 words,
    1 message, 1 budget, 2 tool events, 1 end = 100 events), as fast as it can."""
    rounds = max(1, input // 100)
    for number in range(1, rounds + 1):
        await run.emit("round.started", {"round": number})
        for i in range(94):
            await run.emit("message.delta", {"text": f" w{i}"})
        await run.emit("message.completed", {"text": "…"})
        await run.emit("budget.updated", {"usage": {"total_tokens": number * 10}})
        call = {"name": "lookup", "call_id": f"c{number}"}
        await run.emit("tool.started", {**call, "arguments": {"n": number}})
        await run.emit("tool.completed", {**call, "result": number})
        await run.emit("round.completed", {"round": number})
    return rounds


@app.agent
async def echo(run: culm.RunContext, input: str = "") -> str:
    """Returns its input."""
    return input


@app.agent
async def waiter(run: culm.RunContext, input: None = None) -> str:
    """Waits at a safe point until cancelled."""
    await run.sleep(3600)
    return "woke"


@app.agent
async def crash(run: culm.RunContext, input: str = "boom") -> None:
    """Raises with ``input`` as the message."""
    await run.emit("test.before_crash", {})
    raise RuntimeError(input)


@app.tool
def lookup(query: str) -> str:
    """Looks ``query`` up.

    Args:
        query: What to look up.
    """
    return f"found {query}"


# a model agent on a scripted model: what the dashboard shows for the real thing
app.add_agent(
    "helper",
    model=ScriptedModel(
        *[Reply(calls=[call("lookup", query="weather in Paris")]), "It is sunny in Paris."] * 500,
        chunk_delay=0.02,
    ),
    instructions="You help.",
    tools=[lookup],
    max_rounds=4,
    token_budget=BUDGET,
)

# the function agents that talk like models get a model agent's limits, so the pages show
# "round 2 of 8" and "tokens of the budget" for them too
for _name in ("talker", "lingerer"):
    app.agents[_name] = replace(app.agents[_name], budget=Budget(BUDGET, 8))


# people in the loop


class Order(BaseModel):
    """An order to confirm."""

    item: str = "tea"


@app.agent(resume=True)
async def asker(run: culm.RunContext, input: Order) -> dict[str, object]:
    """Asks how many and for whom (a JSON answer), then which colour (one of three)."""
    how = await run.ask(
        f"How many {input.item}, and for whom?",
        schema={
            "type": "object",
            "properties": {"count": {"type": "integer"}, "name": {"type": "string"}},
            "required": ["count", "name"],
        },
    )
    colour = await run.ask(
        "Which colour?", schema={"type": "string", "enum": ["red", "green", "blue"]}
    )
    return {"item": input.item, "how": how, "colour": colour}


@app.tool(approval=True)
def send_email(to: str, body: str) -> str:
    """Sends an email (each call waits for a person to approve it).

    Args:
        to: Who to write to.
        body: What to say.
    """
    return f"sent to {to}: {body}"


def _gates() -> Path:
    return Path(os.environ.get("DASH_GATES", tempfile.gettempdir()))


async def _wait_for_gate(run: culm.RunContext, gate: str) -> None:
    while not await asyncio.to_thread((_gates() / gate).exists):
        await run.sleep(0.05)


@app.tool
async def wait_for_gate(gate: str, run: culm.RunContext) -> str:
    """Waits until the test opens ``gate`` (a file under ``DASH_GATES``): a round to steer in.

    Args:
        gate: The gate's name.
    """
    await _wait_for_gate(run, gate)
    return f"gate {gate} open"


def _last(request: ModelRequest, role: str) -> str:
    said = [str(m.get("content")) for m in request.messages if m.get("role") == role]
    return said[-1] if said else ""


def _mail(request: ModelRequest) -> Reply | str:
    """Mails whoever the input names, then says what became of it."""
    if not _last(request, "tool"):
        to = _last(request, "user")
        return Reply("Mailing.", calls=[call("send_email", to=to, body="hello")])
    return f"The mail tool said: {_last(request, 'tool')}"


def _steer(request: ModelRequest) -> Reply | str:
    """Waits at the gate the input names, then answers the last thing the user said."""
    if not _last(request, "tool"):
        gate = _last(request, "user")
        return Reply("Waiting at the gate.", calls=[call("wait_for_gate", gate=gate)])
    return f"You said: {_last(request, 'user')}"


# each reply depends only on the conversation, so runs may share (and resume on) the script
app.add_agent(
    "mailer",
    model=ScriptedModel(*[_mail] * 1000, chunk_delay=0.01),
    instructions="You send mail.",
    tools=[send_email],
    max_rounds=4,
)
app.add_agent(
    "steered",
    model=ScriptedModel(*[_steer] * 1000, chunk_delay=0.01),
    instructions="You wait, and listen.",
    tools=[wait_for_gate],
    max_rounds=4,
)
