"""A URL as it may be shown back: the credentials it carries replaced by `***`.

    >>> shown_url("https://user:pa55@hooks.example/h?token=abc&v=2#top")
    'https://***@hooks.example/h?token=***&v=***#top'

A batch's webhook URL is stored as given, since delivery needs all of it, but every key of the
workspace (a chat-scope one too) can read the batch object. So the userinfo goes (`user:pass@`
becomes `***@`, which still says that the URL has some), and so does every query value, whatever
its name: receivers take their tokens under names of their own (`token`, `sig`, `code`, `key`…),
and the names alone tell which URL it was. A query item without `=` is all value and is masked
whole. The path is kept: a secret there cannot be told from an ordinary path.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["shown_url"]

_MASK = "***"


def shown_url(url: str) -> str:
    """`url` without its userinfo and query values (each replaced by `***`)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{_MASK}@{netloc.rpartition('@')[2]}"
    query = "&".join(_masked(item) for item in parts.query.split("&")) if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _masked(item: str) -> str:
    name, equals, value = item.partition("=")
    if not equals:
        return _MASK if item else item
    return f"{name}={_MASK}" if value else item
