"""Metrics for `kaiwa serve --workers N`: one port, N processes, one set of numbers.

    forget = share_metrics(settings)     # in the parent, before the workers are spawned
    ...                                  # each worker writes its values to files there
    forget()                             # once they have all exited

prometheus_client's multiprocess mode: with `PROMETHEUS_MULTIPROC_DIR` in the environment when
a worker first imports it, every value lives in a memory-mapped file of that directory, one
per process, and a scrape answered by any worker reads them all (`Metrics.exposition`).
Counters and histograms add up over the workers; the active gauges count live processes only.

When the variable is not set, a fresh temporary directory is made and removed at the end.
When the operator sets it, the directory is theirs: it is emptied of earlier runs' files at
start (as prometheus_client requires) and left in place.

Deliberate oddity: dead workers are not marked with `mark_process_dead`. The supervisor never
restarts a worker beside running ones (a worker that dies stops them all), so a dead worker's
gauges never linger beside its replacement, and the next start empties the directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from kaiwa.config import Settings

__all__ = ["ENV", "share_metrics"]

ENV = "PROMETHEUS_MULTIPROC_DIR"


def share_metrics(settings: Settings) -> Callable[[], None]:
    """Put the workers' metrics in one directory; returns what to call once they have exited."""
    if not settings.metrics_enabled:
        return lambda: None
    given = os.environ.get(ENV)
    if given:
        for stale in Path(given).glob("*.db"):
            stale.unlink(missing_ok=True)
        return lambda: None
    made = tempfile.mkdtemp(prefix="kaiwa-metrics-")
    os.environ[ENV] = made

    def forget() -> None:
        os.environ.pop(ENV, None)
        shutil.rmtree(made, ignore_errors=True)

    return forget
