"""An application: the agents a server can run, declared in a Python module.

Loaded as ``module:app`` the way uvicorn and Celery load theirs.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, overload

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from culm.agent.budget import Budget
from culm.agent.context import RunContext
from culm.agent.spawn import SpawnLimits
from culm.agent.spawn_tools import BUILTIN_TOOLS
from culm.agent.tools import Tool, as_tool
from culm.agent.waiting import InputPolicy
from culm.errors import InvalidInput, InvalidPayload, NotFound
from culm.llm.base import Model
from culm.payload import DEFAULT_LIMITS, Limits, check

AgentBody = Callable[[RunContext, Any], Awaitable[Any]]


@dataclass(slots=True, frozen=True)
class AgentSpec:
    """A named agent: how to run it and what input it takes."""

    name: str
    body: AgentBody
    description: str = ""
    input_type: Any = Any
    details: dict[str, Any] = field(default_factory=dict)
    """What else a listing shows (a model agent's model and tools)."""
    budget: Budget = field(default_factory=Budget)
    """The most one run may use (a model agent's token budget and max rounds)."""
    resume: bool = False
    """When the process running one of its runs dies, resume the run (from its log) rather
    than end it ``interrupted``: model agents by default, function agents that opt in."""
    spawn: SpawnLimits = field(default_factory=SpawnLimits)
    """Limits on the children its runs start, on top of the engine's."""
    input_default: Any = inspect.Parameter.empty
    """The input a run gets when started without one."""
    input_policy: InputPolicy = field(default_factory=InputPolicy)
    """How long its runs wait for a person, and what happens when nobody answers."""
    _adapter: TypeAdapter[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_adapter", TypeAdapter(self.input_type))

    @property
    def input_schema(self) -> dict[str, Any]:
        return self._adapter.json_schema()

    def validate_input(self, value: Any, limits: Limits = DEFAULT_LIMITS) -> Any:
        """The input in its stored (JSON) form, or ``InvalidInput`` saying what is wrong
        (``InvalidPayload`` when it cannot be stored as JSON within ``limits``).

        No input (None) means the agent's default input, when it declares one.
        """
        if value is None and self.input_default is not inspect.Parameter.empty:
            value = self.input_default
        typed = self.parse_input(value)
        what = f"the input for agent {self.name!r}"
        try:  # a run's input is stored as JSON: refuse what cannot be, before storing anything
            stored = self._adapter.dump_python(typed, mode="json")
        except (TypeError, ValueError, PydanticSerializationError) as exc:
            raise InvalidPayload(f"{what} cannot be stored as JSON: {exc}") from None
        return check(stored, limits, what=what)

    def parse_input(self, value: Any) -> Any:
        """The input as the agent receives it (a pydantic model, a dataclass...)."""
        try:
            return self._adapter.validate_python(value)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidInput(f"invalid input for agent {self.name!r}: {problems}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            **self.details,
        }


class App:
    """The registry of agents that an engine runs."""

    def __init__(self) -> None:
        self.agents: dict[str, AgentSpec] = {}
        self.tools: dict[str, Tool] = {}

    @overload
    def agent(self, fn: Callable[..., Any], /) -> Callable[..., Any]: ...

    @overload
    def agent(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        spawn: SpawnLimits | None = None,
        resume: bool = False,
        input_timeout: float | None = None,
        on_input_timeout: str = "fail",
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...

    def agent(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        spawn: SpawnLimits | None = None,
        resume: bool = False,
        input_timeout: float | None = None,
        on_input_timeout: str = "fail",
    ) -> Any:
        """Register ``async def agent(run: RunContext, input: T)`` as an agent.

        The function may return its output, or be an async generator that yields events
        as ``(type, data)`` pairs. ``T`` (from the annotation) validates the input.
        ``spawn`` limits the children its runs may start (``run.spawn``). With ``resume``
        a run whose process died runs again from the top on resume: its emits and
        ``run.step`` results are matched against its log and not done again (see
        ``RunContext.step``); without it such a run ends ``interrupted``. A resumable
        agent may also ask a person (``run.ask``): ``input_timeout`` (seconds) bounds each
        wait, after which the run fails (``on_input_timeout="fail"``) or goes on with the
        question's default (``"continue"``).
        """
        policy = InputPolicy(input_timeout, on_input_timeout)

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            made = function_agent(fn, name=name, description=description, spawn=spawn)
            self.add(dataclasses.replace(made, resume=resume, input_policy=policy))
            return fn

        return register(fn) if fn is not None else register

    @overload
    def tool(self, fn: Callable[..., Any], /) -> Tool: ...

    @overload
    def tool(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        idempotent: bool = False,
        approval: bool = False,
    ) -> Callable[[Callable[..., Any]], Tool]: ...

    def tool(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        idempotent: bool = False,
        approval: bool = False,
    ) -> Any:
        """Register a function or coroutine as a tool model agents may use.

        Its schema comes from its type hints and docstring; the ``Tool`` returned still
        calls the function when called. ``timeout`` (seconds) bounds each call.
        ``idempotent``: a call that a crash cut off is made again when the run resumes
        (otherwise the model is told it may or may not have taken effect).
        ``approval``: each call waits for a person to approve it (``run.waiting``); a
        refusal and its reason are what the model reads instead of a result.
        """

        def register(fn: Callable[..., Any]) -> Tool:
            made = Tool(
                fn,
                name=name,
                description=description,
                timeout=timeout,
                idempotent=idempotent,
                approval=approval,
            )
            if made.name in self.tools:
                raise ValueError(f"a tool named {made.name!r} is already registered")
            self.tools[made.name] = made
            return made

        return register(fn) if fn is not None else register

    def add_agent(
        self,
        name: str,
        *,
        model: str | Model,
        instructions: str = "",
        tools: Iterable[Tool | Callable[..., Any] | str] = (),
        max_rounds: int = 8,
        token_budget: int | None = None,
        timeout: float | None = None,
        description: str | None = None,
        spawn: SpawnLimits | None = None,
        resume: bool = True,
        approve: Iterable[str] = (),
        input_timeout: float | None = None,
        on_input_timeout: str = "fail",
        **options: Any,
    ) -> AgentSpec:
        """Register a model agent: ``model`` (``openai:gpt-4o-mini``, ``local:smollm2``...)
        with ``instructions`` and ``tools``, run in rounds until it answers.

        ``tools`` are ``Tool``s, plain functions, or names of tools registered here (or
        the built-in ``spawn_agent`` and ``wait_children``). ``token_budget`` caps total
        tokens (its children's included), ``timeout`` the run's wall-clock seconds;
        ``spawn`` limits the children it starts. With ``resume`` (the default) a run whose
        process died goes on from its log when resumed: completed rounds and recorded tool
        results are not redone; a model call that was cut off is made again.
        ``approve``: names of its tools whose calls wait for a person's approval (as
        tools registered with ``approval=True`` do); ``input_timeout`` (seconds) bounds
        such a wait (and an ``ask_user`` question), after which the run fails
        (``on_input_timeout="fail"``) or goes on with the call refused
        (``"continue"``).
        ``options``: ``tool_timeout``, ``tool_choice``, ``retry``, ``model_settings``.
        """
        from culm.agent.model_agent import model_agent  # it builds on this module

        spec = model_agent(
            name,
            model,
            resume=resume,
            description=description,
            instructions=instructions,
            tools=[self._tool(t) for t in tools],
            max_rounds=max_rounds,
            token_budget=token_budget,
            timeout=timeout,
            spawn=spawn,
            approve=frozenset(approve),
            **options,
        )
        return self.add(
            dataclasses.replace(spec, input_policy=InputPolicy(input_timeout, on_input_timeout))
        )

    def _tool(self, item: Tool | Callable[..., Any] | str) -> Tool:
        if isinstance(item, str):
            found = self.tools.get(item) or BUILTIN_TOOLS.get(item)
            if found is None:
                known = ", ".join(sorted({*self.tools, *BUILTIN_TOOLS}))
                raise NotFound(f"no tool named {item!r} (known tools: {known})")
            return found
        return as_tool(item)

    def add(self, spec: AgentSpec) -> AgentSpec:
        if spec.name in self.agents:
            raise ValueError(f"an agent named {spec.name!r} is already registered")
        self.agents[spec.name] = spec
        return spec

    def get(self, name: str) -> AgentSpec:
        try:
            return self.agents[name]
        except KeyError:
            known = ", ".join(sorted(self.agents)) or "none"
            raise NotFound(f"no agent named {name!r} (known agents: {known})") from None


def function_agent(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    spawn: SpawnLimits | None = None,
) -> AgentSpec:
    """An agent spec for a plain async function or async generator."""
    if not (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
        raise TypeError(f"{fn!r} must be an async function or an async generator function")
    params = list(inspect.signature(fn).parameters.values())
    if len(params) != 2:
        raise TypeError(f"{fn.__name__} must take exactly (run, input)")
    hints = typing.get_type_hints(fn)
    input_type = hints.get(params[1].name, Any)
    body: AgentBody = _generator_body(fn) if inspect.isasyncgenfunction(fn) else fn
    return AgentSpec(
        name=name or fn.__name__,
        body=body,
        description=description or inspect.getdoc(fn) or "",
        input_type=input_type,
        spawn=spawn or SpawnLimits(),
        input_default=params[1].default,
    )


def _generator_body(fn: Callable[[RunContext, Any], AsyncIterator[Any]]) -> AgentBody:
    async def body(run: RunContext, input: Any) -> None:
        async for item in fn(run, input):
            if isinstance(item, tuple) and len(item) == 2:
                await run.emit(item[0], item[1])
            else:
                raise TypeError(f"an agent generator must yield (type, data) pairs, got {item!r}")

    return body


def load_app(target: str) -> App:
    """Import ``module:attribute`` and return the App it names."""
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    app = getattr(module, attr or "app", None)
    if not isinstance(app, App):
        raise InvalidInput(f"{target!r} does not name a culm.App")
    return app
