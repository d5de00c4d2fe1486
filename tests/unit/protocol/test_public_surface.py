"""The public surface of `kaiwa.protocol` is pinned: adding or removing a name is a decision."""

from __future__ import annotations

import importlib

import pytest

import kaiwa.protocol

PUBLIC = [
    "ApiError",
    "ChatTitleUpdated",
    "DONE",
    "Envelope",
    "ErrorCode",
    "Event",
    "OutputTextCompleted",
    "OutputTextDelta",
    "Pagination",
    "ReasoningStepEnd",
    "ReasoningStepStart",
    "ResponseCreated",
    "ResponseError",
    "ResponseState",
    "SSEDecoder",
    "ServerSentEvent",
    "StepEnd",
    "StepResult",
    "StepStart",
    "StepType",
    "TokenUsage",
    "encode_frame",
    "parse_event",
]


def test_all_is_pinned() -> None:
    assert sorted(kaiwa.protocol.__all__) == PUBLIC


def test_all_has_no_duplicates() -> None:
    assert len(set(kaiwa.protocol.__all__)) == len(kaiwa.protocol.__all__)


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_imports(name: str) -> None:
    module = importlib.import_module("kaiwa.protocol")
    assert getattr(module, name) is not None


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from kaiwa.protocol import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == PUBLIC
