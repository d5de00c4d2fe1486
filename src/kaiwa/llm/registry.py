"""Resolves `provider/model` strings to models, from the configured providers."""

from __future__ import annotations

from collections.abc import Mapping

from kaiwa.config import ProviderSettings
from kaiwa.llm.base import ChatModel


class UnknownModelError(LookupError):
    """The `llm_model` string names no configured provider, or is not `provider/model`."""


class ModelRegistry:
    """`registry.get("builtin/extractive")` → a `ChatModel`. Models are built once and reused."""

    def __init__(self, providers: Mapping[str, ProviderSettings]) -> None:
        self._providers = dict(providers)
        self._models: dict[str, ChatModel] = {}

    def check(self, llm_model: str) -> None:
        """Raise `UnknownModelError` with a message naming the problem, or return."""
        provider, _, model = llm_model.partition("/")
        if not provider or not model:
            raise UnknownModelError(
                f"llm_model must be 'provider/model' (for example 'builtin/extractive'), "
                f"got {llm_model!r}"
            )
        if provider not in self._providers:
            names = ", ".join(sorted(self._providers))
            raise UnknownModelError(
                f"llm_model {llm_model!r} names an unknown provider {provider!r}; "
                f"configured providers: {names}"
            )

    def get(self, llm_model: str) -> ChatModel:
        cached = self._models.get(llm_model)
        if cached is not None:
            return cached
        self.check(llm_model)
        provider, _, model = llm_model.partition("/")
        built = self._build(provider, model, self._providers[provider])
        self._models[llm_model] = built
        return built

    async def aclose(self) -> None:
        """Close the models that hold connections (their pools belong to this event loop)."""
        models, self._models = list(self._models.values()), {}
        for model in models:
            close = getattr(model, "aclose", None)
            if close is not None:
                await close()

    @staticmethod
    def _build(provider: str, model: str, settings: ProviderSettings) -> ChatModel:
        if settings.type == "builtin":
            from kaiwa.llm.builtin import ExtractiveModel

            return ExtractiveModel(provider, model, chunk_delay=settings.chunk_delay)
        if settings.type == "scripted":
            from kaiwa.llm.scripted import ScriptedModel

            return ScriptedModel(provider, model)
        if settings.type == "anthropic":
            from kaiwa.llm.anthropic import AnthropicModel

            return AnthropicModel(provider, model, settings)
        from kaiwa.llm.openai import OpenAIModel

        return OpenAIModel(provider, model, settings)
