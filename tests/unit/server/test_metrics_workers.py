"""`share_metrics`: the directory `kaiwa serve --workers N` gives its workers' metrics."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kaiwa.config import Settings
from kaiwa.server.metrics_workers import ENV, share_metrics


def test_without_a_directory_a_temporary_one_is_made_and_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    forget = share_metrics(Settings())
    made = Path(os.environ[ENV])
    assert made.is_dir()
    assert not list(made.iterdir())
    forget()
    assert ENV not in os.environ
    assert not made.exists()


def test_the_operators_directory_is_emptied_of_earlier_runs_and_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "counter_4242.db").write_bytes(b"stale")
    (tmp_path / "gauge_livesum_4242.db").write_bytes(b"stale")
    (tmp_path / "notes.txt").write_text("not ours")
    monkeypatch.setenv(ENV, str(tmp_path))
    forget = share_metrics(Settings())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    forget()
    assert os.environ[ENV] == str(tmp_path)
    assert tmp_path.is_dir()


def test_with_metrics_off_nothing_is_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    forget = share_metrics(Settings(metrics_enabled=False))
    assert ENV not in os.environ
    forget()
