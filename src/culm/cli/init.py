"""``culm init``: a small application to start from, which ``culm serve`` runs as it is."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from culm.cli.app import app, fail, stderr, stdout

AGENTS = '''\
"""My agents: `culm serve agents:app` serves them; `pytest` runs their tests."""

import os

import culm

app = culm.App()


@app.agent
async def hello(run: culm.RunContext, input: str = "world") -> str:
    """Greets whoever you name, after a short pause (a safe point for cancel)."""
    await run.emit("hello.thinking", {"name": input})
    await run.sleep(0.5)
    return f"Hello, {input}!"


@app.tool
def get_weather(city: str) -> str:
    """Current weather for a city.

    Args:
        city: The city's name, in English.
    """
    return f"sunny, 21 C in {city}"


# A model agent. The default model is the small local one that `make serve` installs; set
# CULM_MODEL=openai:gpt-4o-mini (with OPENAI_API_KEY) for a real one. A model as small as
# SmolLM2-135M cannot choose tools, so the call is forced with tool_choice.
app.add_agent(
    "forecaster",
    model=os.environ.get("CULM_MODEL", "local:smollm2"),
    instructions="You answer questions about the weather in one sentence.",
    tools=[get_weather],
    tool_choice="get_weather",
    max_rounds=1,
    timeout=120,
)
'''

TESTS = '''\
"""Tests of my agents, on a scripted model: no network, no model weights."""

from pathlib import Path

import pytest

import culm
import culm.testing
from culm.testing import Reply, ScriptedModel, call

from agents import app

culm.testing.block_model_requests()  # a real model cannot be reached by accident


@pytest.fixture
def settings(tmp_path: Path) -> culm.Settings:
    return culm.Settings(database_url=f"sqlite:///{tmp_path}/test.db")


async def test_hello(settings: culm.Settings) -> None:
    async with culm.Engine(app, settings) as engine:
        run = await engine.start_run("hello", "Ada")
        done = await engine.wait(run.id, timeout=10)
    assert done.state.output == "Hello, Ada!"


async def test_forecaster_calls_its_tool(settings: culm.Settings) -> None:
    model = ScriptedModel(Reply(calls=[call("get_weather", city="Paris")]), "Sunny in Paris.")
    with culm.testing.override_model(app, "forecaster", model):
        async with culm.Engine(app, settings) as engine:
            run = await engine.start_run("forecaster", "Weather in Paris?")
            done = await engine.wait(run.id, timeout=10)
            events = [e.type async for e in engine.subscribe(run.id)]
    assert done.state.output["text"] == "Sunny in Paris."
    assert "tool.completed" in events
'''

PYTEST_INI = """\
[pytest]
asyncio_mode = auto
"""

FILES = {"agents.py": AGENTS, "test_agents.py": TESTS, "pytest.ini": PYTEST_INI}


@app.command()
def init(
    directory: Annotated[
        Path, typer.Argument(help="Where to write the files (default: here).")
    ] = Path(),
) -> None:
    """Write a small example application (agents, a tool, a test) to start from."""
    taken = [name for name in FILES if (directory / name).exists()]
    if taken:
        raise fail(f"{', '.join(taken)} already exist(s) in {directory}: nothing was written")
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in FILES.items():
        (directory / name).write_text(text)
        stdout().print(f"wrote {directory / name}")
    where = "" if directory == Path() else f"cd {directory} && "
    stderr().print(
        f"next: {where}culm serve agents:app   then: culm run hello Ada --follow\n"
        f"      tests: {where}pytest   (needs pytest and pytest-asyncio)",
        style="dim",
    )
