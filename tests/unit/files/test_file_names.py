"""File names: what is kept of a client's name, and how a download names the file."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from kaiwa.files.uploads import clean_name
from kaiwa.server.routes.files import content_disposition


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("report.pdf", "report.pdf"),
        ("C:\\fakepath\\report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("  議事録.docx ", "議事録.docx"),
        ("bad\x00\x1fname.txt", "badname.txt"),
        ("", "file"),
        (None, "file"),
        ("dir/", "file"),
        ("a" * 300 + ".txt", "a" * 251 + ".txt"),
    ],
)
def test_clean_name(given: str | None, kept: str) -> None:
    assert clean_name(given) == kept


@pytest.mark.parametrize(
    ("name", "fallback"),
    [
        ("report.pdf", "report.pdf"),
        ("議事録.pdf", "download.pdf"),
        ("Café menu.txt", "Cafe menu.txt"),
        ('say "hi"; ok.txt', "say _hi__ ok.txt"),
    ],
)
def test_content_disposition_names_the_file_for_old_and_new_clients(
    name: str, fallback: str
) -> None:
    header = content_disposition("inline", name)
    assert header.startswith(f"inline; filename=\"{fallback}\"; filename*=UTF-8''")
    assert header.isascii()
    assert unquote(header.split("filename*=UTF-8''", 1)[1]) == name
