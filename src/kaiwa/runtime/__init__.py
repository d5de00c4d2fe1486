"""Responses: the producer side. Runs the agent and writes its events to the log; knows no HTTP."""

from kaiwa.runtime.responses import Runtime, StartedResponse, TurnRequest

__all__ = ["Runtime", "StartedResponse", "TurnRequest"]
