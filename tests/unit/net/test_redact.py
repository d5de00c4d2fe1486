"""`shown_url`: the userinfo and every query value of a URL masked, the rest kept."""

from __future__ import annotations

import pytest

from kaiwa.net.redact import shown_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://user:pa55@hooks.example/h?token=abc&v=2#top",
            "https://***@hooks.example/h?token=***&v=***#top",
        ),
        ("https://hooks.example/h", "https://hooks.example/h"),
        ("https://hooks.example:8443/a/b/", "https://hooks.example:8443/a/b/"),
        ("http://only-user@127.0.0.1:8080/hook", "http://***@127.0.0.1:8080/hook"),
        ("https://a@b:c@host/x", "https://***@host/x"),
        ("https://[::1]:8443/p?x=1", "https://[::1]:8443/p?x=***"),
        # An item without `=` is all value; empty values and items stay as they were.
        ("https://h/x?s3cret", "https://h/x?***"),
        ("https://h/x?a=&b=1&&c", "https://h/x?a=&b=***&&***"),
        ("https://h/x?k=a%26b%3Dc", "https://h/x?k=***"),
    ],
)
def test_credentials_are_masked_and_the_rest_is_kept(url: str, shown: str) -> None:
    assert shown_url(url) == shown
