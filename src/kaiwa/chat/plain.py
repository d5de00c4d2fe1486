"""Views that need nothing but `print`: JSON lines, and silence for `--once`.

kaiwa chat --once "営業時間は?"          # QuietView: only the final text, printed after
kaiwa chat --once "営業時間は?" --json   # JsonView: one event per line, as it arrives
"""

from __future__ import annotations

import sys
from typing import TextIO

from kaiwa.protocol import Event, ResponseState


class JsonView:
    """Each event as one JSON line (`event.model_dump_json()`), flushed at once."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self._out = out

    def begin(self) -> None:
        pass

    def show(self, event: Event, state: ResponseState) -> None:
        self._out.write(event.model_dump_json() + "\n")
        self._out.flush()

    def end(self, state: ResponseState, *, stopped: bool) -> None:
        pass


class QuietView:
    """Shows nothing while the answer streams; the caller prints what it wants at the end."""

    def begin(self) -> None:
        pass

    def show(self, event: Event, state: ResponseState) -> None:
        pass

    def end(self, state: ResponseState, *, stopped: bool) -> None:
        pass
