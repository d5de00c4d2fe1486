"""Models: one narrow streaming protocol (`ChatModel`) and a module per provider."""

from kaiwa.llm.base import (
    ChatMessage,
    ChatModel,
    ModelError,
    ModelEvent,
    ModelRequest,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)
from kaiwa.llm.registry import ModelRegistry

__all__ = [
    "ChatMessage",
    "ChatModel",
    "ModelError",
    "ModelEvent",
    "ModelRegistry",
    "ModelRequest",
    "TextDelta",
    "ToolCall",
    "ToolSpec",
    "Usage",
]
