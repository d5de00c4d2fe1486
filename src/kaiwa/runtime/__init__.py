"""Responses: the producer side. Runs the agent and writes its events to the log; knows no HTTP."""

from kaiwa.runtime.responses import Runtime, StartedResponse
from kaiwa.runtime.stops import CancelReason
from kaiwa.runtime.tokens import TokenClaims, TokenSigner
from kaiwa.runtime.turns import TurnRequest

__all__ = [
    "CancelReason",
    "Runtime",
    "StartedResponse",
    "TokenClaims",
    "TokenSigner",
    "TurnRequest",
]
