"""Tools: schema from the signature and docstring, validated arguments, how they run."""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

import culm
from culm.agent.context import CancelToken, RunContext
from culm.agent.tools import Tool, ToolArgumentsError, parse_docstring, result_data, result_text


def context() -> RunContext:
    async def emit(type: str, data: dict[str, object]) -> None:
        pass

    return RunContext(
        run_id="run_1", session_id="ses_1", tenant="t", agent="a", emit=emit,
        cancel_token=CancelToken(),
    )  # fmt: skip


class Point(BaseModel):
    x: int
    y: int


class TestSchema:
    """What the model sees of a tool."""

    def test_from_hints_defaults_and_a_google_docstring(self) -> None:
        def get_weather(city: str, unit: Literal["c", "f"] = "c", days: int = 1) -> str:
            """Current weather for a city.

            Args:
                city: The city's name,
                    in English.
                unit: Degrees Celsius or Fahrenheit.

            Returns:
                A sentence.
            """
            return ""

        tool = Tool(get_weather)
        assert tool.name == "get_weather"
        assert tool.spec.description == "Current weather for a city."
        assert tool.spec.parameters == {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "city": {
                    "type": "string",
                    "title": "City",
                    "description": "The city's name, in English.",
                },
                "unit": {
                    "type": "string",
                    "enum": ["c", "f"],
                    "default": "c",
                    "title": "Unit",
                    "description": "Degrees Celsius or Fahrenheit.",
                },
                "days": {"type": "integer", "default": 1, "title": "Days"},
            },
            "required": ["city"],
        }

    def test_sphinx_params_annotated_fields_and_overrides(self) -> None:
        async def move(
            to: Point, speed: Annotated[float, Field(gt=0, description="Metres a second.")]
        ) -> None:
            """Move somewhere.

            :param to: Where to.
            """

        tool = Tool(move, name="go", description="Go.")
        assert (tool.name, tool.spec.name, tool.spec.description) == ("go", "go", "Go.")
        props = tool.spec.parameters["properties"]
        assert props["to"]["description"] == "Where to."
        assert props["speed"]["description"] == "Metres a second."
        assert props["speed"]["exclusiveMinimum"] == 0
        assert "Point" in tool.spec.parameters["$defs"]

    def test_the_run_context_is_hidden_from_the_model(self) -> None:
        def note(run: RunContext, text: str) -> str:
            """Take a note."""
            return run.run_id + text

        assert list(Tool(note).spec.parameters["properties"]) == ["text"]

    def test_unnamed_parameters_are_refused(self) -> None:
        def bad(*args: int) -> None: ...

        with pytest.raises(TypeError, match="passable by name"):
            Tool(bad)

    def test_parse_docstring(self) -> None:
        assert parse_docstring(
            "Sum.\n\nArgs:\n    a (int): first\n    b: second\nRaises:\n    X"
        ) == (
            "Sum.",
            {"a": "first", "b": "second"},
        )


class TestCalls:
    """Arguments are validated; sync tools run in a worker thread; the context is passed."""

    def test_validation(self) -> None:
        def move(to: Point, speed: float = 1.0) -> None: ...

        tool = Tool(move)
        args = tool.validate('{"to": {"x": 1, "y": "2"}}')
        assert args == {"to": Point(x=1, y=2), "speed": 1.0}
        assert Tool(lambda: None, name="none").validate(" ") == {}  # blank is no arguments
        for bad, why in [
            ("{not json", "not valid JSON"),
            ("[1]", "must be a JSON object"),
            ('{"to": {"x": 1}}', "to.y: Field required"),
            ('{"to": {"x": 1, "y": 2}, "fast": true}', "fast: Extra inputs are not permitted"),
        ]:
            with pytest.raises(ToolArgumentsError, match=why):
                tool.validate(bad)

    async def test_sync_tools_run_in_a_thread_async_ones_on_the_loop(self) -> None:
        def where() -> int:
            return threading.get_ident()

        async def here() -> int:
            return threading.get_ident()

        run = context()
        assert await Tool(where).invoke({}, run) != threading.get_ident()
        assert await Tool(here).invoke({}, run) == threading.get_ident()

    async def test_the_run_context_is_passed(self) -> None:
        async def whoami(run: RunContext, suffix: str) -> str:
            return run.run_id + suffix

        tool = Tool(whoami)
        assert await tool.invoke(tool.validate({"suffix": "!"}), context()) == "run_1!"

    def test_a_tool_is_still_the_function(self) -> None:
        app = culm.App()

        @app.tool
        def double(n: int) -> int:
            """Twice n."""
            return 2 * n

        assert isinstance(double, Tool) and double(4) == 8
        assert app.tools == {"double": double}
        with pytest.raises(ValueError, match="already registered"):
            app.tool(name="double")(lambda: None)

    def test_results(self) -> None:
        assert result_text("plain") == "plain"
        assert result_text({"a": [1, 2]}) == '{"a":[1,2]}'
        assert result_text(Point(x=1, y=2)) == '{"x":1,"y":2}'
        assert result_data(Point(x=1, y=2)) == {"x": 1, "y": 2}
        assert result_data(asyncio) is not None  # anything falls back to its str


class TestAddAgent:
    """add_agent takes tools as Tool objects, plain functions or registered names."""

    def test_tools_in_every_form(self) -> None:
        app = culm.App()

        @app.tool
        def a() -> str:
            """A."""
            return "a"

        def b() -> str:
            """B."""
            return "b"

        spec = app.add_agent("x", model="openai:m", tools=[a, b], instructions="Hi.")
        assert spec.to_dict()["tools"] == ["a", "b"]
        assert spec.to_dict()["model"] == "openai:m"
        assert spec.description == "Hi."
        assert spec.validate_input("hello") == "hello" and spec.validate_input(None) is None
        assert app.add_agent("y", model="openai:m", tools=["a"]).to_dict()["tools"] == ["a"]
        with pytest.raises(culm.NotFound, match="no tool named 'c'"):
            app.add_agent("z", model="openai:m", tools=["c"])

    def test_bad_settings_are_refused_at_once(self) -> None:
        app = culm.App()
        with pytest.raises(ValueError, match="max_rounds"):
            app.add_agent("x", model="openai:m", max_rounds=0)
        with pytest.raises(ValueError, match="tool_choice"):
            app.add_agent("x", model="openai:m", tool_choice="nope")
