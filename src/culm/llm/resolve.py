"""Turn ``provider:model`` strings into models; providers are imported only when named,
so an application that never uses a local model never imports llama-cpp-python."""

from __future__ import annotations

from typing import Any

from culm.llm.base import Model
from culm.llm.errors import ModelError

PROVIDERS = ("openai", "local")


def resolve_model(model: str | Model, **settings: Any) -> Model:
    """The model ``model`` names (``openai:gpt-4o-mini``, ``local:smollm2``,
    ``local:/path/to/model.gguf``), or ``model`` itself when it is already one.

    ``settings`` go to the provider: ``api_key``, ``base_url``, ``temperature``, ...
    """
    if not isinstance(model, str):
        return model
    provider, sep, name = model.partition(":")
    if not sep or not name:
        raise ModelError(f"a model is named 'provider:model', got {model!r}")
    if provider == "openai":
        from culm.llm.openai import OpenAIModel

        return OpenAIModel(name, **settings)
    if provider == "local":
        from culm.llm.local import LocalModel

        return LocalModel(name, **settings)
    raise ModelError(f"unknown model provider {provider!r} in {model!r} (known: openai, local)")
