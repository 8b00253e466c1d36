"""The app a real ``culm serve`` runs in the people-in-the-loop tests: model agents on the
test's own OpenAI-compatible server (``FAKE_OPENAI_URL``) whose tools write each real
execution to ``RECORD_FILE``, and a function agent that asks questions."""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel

import culm
from culm.llm import RetryPolicy

app = culm.App()
_MODEL = {"api_key": "test-key", "base_url": os.environ.get("FAKE_OPENAI_URL", "")}
_RETRY = RetryPolicy(attempts=1, initial_delay=0.01, max_delay=0.05)


def _record(line: str) -> None:
    with open(os.environ["RECORD_FILE"], "a") as out:
        out.write(f"{line}\n")


@app.tool(approval=True)
def send_email(to: str, body: str) -> str:
    """Sends an email."""
    _record(f"send_email {to} {body}")
    return f"sent to {to}"


@app.tool
def lookup(name: str) -> str:
    """Looks a name up."""
    _record(f"lookup {name}")
    return f"{name} is at {name}@example.com"


@app.tool
async def wait_for_gate(n: int, run: culm.RunContext) -> str:
    """Waits until ``GATE_FILE`` exists (a round to steer in)."""
    while not await asyncio.to_thread(os.path.exists, os.environ["GATE_FILE"]):
        await run.sleep(0.02)
    return f"gate {n} open"


app.add_agent(
    "mailer",
    model="openai:fake-model",
    model_settings=_MODEL,
    tools=[send_email, lookup, "ask_user"],
    retry=_RETRY,
)
app.add_agent(
    "mailer_in_a_hurry",
    model="openai:fake-model",
    model_settings=_MODEL,
    tools=[lookup, "send_email"],
    approve=["lookup"],
    input_timeout=0.5,
    on_input_timeout="continue",
    retry=_RETRY,
)
app.add_agent(
    "steered",
    model="openai:fake-model",
    model_settings=_MODEL,
    tools=[wait_for_gate],
    retry=_RETRY,
)


class Account(BaseModel):
    number: int
    owner: str


@app.agent(resume=True)
async def asker(run: culm.RunContext, input: str) -> dict[str, object]:
    """Asks which account, then how much, with a step between (it must run once)."""
    account = await run.ask(
        "Which account?",
        schema={
            "type": "object",
            "properties": {"number": {"type": "integer"}, "owner": {"type": "string"}},
            "required": ["number", "owner"],
        },
    )
    await run.step("note", lambda: _record(f"note {input}") or "noted")
    typed = await run.ask("Which account, typed?", Account)
    return {"account": account, "typed": typed.model_dump()}


@app.agent(resume=True, input_timeout=0.5)
async def impatient(run: culm.RunContext, input: str) -> str:
    """Asks, and fails when nobody answers in half a second."""
    return str(await run.ask("Quick: yes or no?"))


@app.agent
async def forgetful(run: culm.RunContext, input: str) -> str:
    """Asks without being resumable: the run fails with why."""
    return str(await run.ask("Anything?"))
