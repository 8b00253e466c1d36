"""Tools: plain functions or coroutines the model may call, described by their signature.

The JSON schema the model sees comes from the type hints (through pydantic) and the
docstring: its first part describes the tool, an ``Args:`` section (or ``:param x:``
lines) describes each parameter. A parameter annotated ``RunContext`` receives the run
and is hidden from the model.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any

import pydantic
import pydantic_core

from culm.agent.context import RunContext
from culm.llm.base import ToolSpec


class ToolArgumentsError(Exception):
    """The model's arguments do not fit the tool's signature; the model is told why."""


class Tool:
    """A function the model may call, with its schema and argument validation."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        idempotent: bool = False,
        approval: bool = False,
    ) -> None:
        """``timeout`` (seconds) overrides the agent's per-call tool timeout.
        ``idempotent``: a call cut off by a crash may simply be made again on resume.
        ``approval``: every call waits for a person to approve it (or refuse it)."""
        self.fn = fn
        self.name = name or fn.__name__
        self.timeout = timeout
        self.idempotent = idempotent
        self.approval = approval
        self.asks = False
        """A question to a person (``ask_user``): the answer is the call's result."""
        self.is_async = inspect.iscoroutinefunction(fn)
        summary, params = parse_docstring(inspect.getdoc(fn) or "")
        self.description = description or summary
        self._context_param, self._arguments = _arguments_model(fn, self.name, params)
        schema = self._arguments.model_json_schema()
        schema.pop("title", None)
        self.spec = ToolSpec(self.name, self.description, schema)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function itself, as if it were not a tool."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"

    def validate(self, arguments: str | Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments for a call, from the model's JSON, or ``ToolArgumentsError``."""
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                raise ToolArgumentsError(f"the arguments are not valid JSON: {exc}") from None
        if not isinstance(arguments, Mapping):
            raise ToolArgumentsError("the arguments must be a JSON object")
        try:
            parsed = self._arguments.model_validate(arguments)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            raise ToolArgumentsError(f"invalid arguments for {self.name}: {problems}") from None
        return {field: getattr(parsed, field) for field in type(parsed).model_fields}

    async def invoke(self, arguments: Mapping[str, Any], run: RunContext) -> Any:
        """Call the tool with validated arguments; a sync tool runs in a worker thread."""
        kwargs = dict(arguments)
        if self._context_param is not None:
            kwargs[self._context_param] = run
        if self.is_async:
            return await self.fn(**kwargs)
        return await asyncio.to_thread(functools.partial(self.fn, **kwargs))


def as_tool(item: Tool | Callable[..., Any]) -> Tool:
    """``item`` if it is a tool, else a tool made from the function."""
    return item if isinstance(item, Tool) else Tool(item)


def result_text(value: Any) -> str:
    """A tool's result as the model reads it: text as it is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return pydantic_core.to_json(value, fallback=str).decode()


def result_data(value: Any) -> Any:
    """A tool's result as an event carries it: JSON-compatible data."""
    return pydantic_core.to_jsonable_python(value, fallback=str)


def _arguments_model(
    fn: Callable[..., Any], name: str, descriptions: Mapping[str, str]
) -> tuple[str | None, type[pydantic.BaseModel]]:
    hints = typing.get_type_hints(fn, include_extras=True)
    context_param = None
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        annotation = hints.get(param.name, Any)
        if annotation is RunContext:
            context_param = param.name
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise TypeError(f"tool {name}: parameter {param.name} must be passable by name")
        default = ... if param.default is param.empty else param.default
        # without a docstring entry, leave the description to an Annotated Field, if any
        description = descriptions.get(param.name)
        field = pydantic.Field(default, description=description) if description else default
        fields[param.name] = (annotation, field)
    model = pydantic.create_model(
        f"{name}_arguments", __config__=pydantic.ConfigDict(extra="forbid"), **fields
    )
    return context_param, typing.cast(type[pydantic.BaseModel], model)


_SECTION = re.compile(r"^([A-Z]\w*(?: \w+)*):\s*$")
_PARAM_SECTIONS = frozenset({"Args", "Arguments", "Parameters"})
_ARG = re.compile(r"^\s+\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The description and the per-parameter descriptions of a Google or Sphinx docstring.

    The description is the text before the first section (``Args:``, ``Returns:``, ...)
    or ``:param`` line.
    """
    summary: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in doc.splitlines():
        header = _SECTION.match(line)
        sphinx = _SPHINX.match(line.strip())
        arg = _ARG.match(line) if section in _PARAM_SECTIONS else None
        if header:
            section, current = header.group(1), None
        elif sphinx or arg:
            match = sphinx or arg
            assert match is not None
            section = section or ":param"
            current = match.group(1)
            params[current] = match.group(2).strip()
        elif section is None:
            summary.append(line)
        elif current is not None and line[:1].isspace() and line.strip():
            params[current] = f"{params[current]} {line.strip()}".strip()
        else:
            current = None
    return "\n".join(summary).strip(), params
