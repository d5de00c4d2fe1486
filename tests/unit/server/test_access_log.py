"""`redact`: secret query values leave the access log's paths; nothing else changes."""

from __future__ import annotations

from kaiwa.server.access_log import redact


def test_redact_replaces_secret_query_values_only() -> None:
    assert redact("/e?token=abc.def&after=3") == "/e?token=[redacted]&after=3"
    assert redact("/e?after=3&api_key=kw_x") == "/e?after=3&api_key=[redacted]"
    assert redact("/e?x-api-key=kw_y#f") == "/e?x-api-key=[redacted]#f"
    assert redact("/e?tokens=1&monkey=2") == "/e?tokens=1&monkey=2"
    assert redact("/api/v1/chats") == "/api/v1/chats"


def test_redact_replaces_any_value_that_is_a_kaiwa_key_whatever_its_name() -> None:
    assert redact("/e?auth=kw_abc-123&y=2") == "/e?auth=[redacted]&y=2"
    assert redact("/e?a=1&secret=KW_up") == "/e?a=1&secret=[redacted]"
    assert redact("/e?b=kw%5Fencoded") == "/e?b=[redacted]"
    assert redact("/e?api-key=zz") == "/e?api-key=[redacted]"
    assert redact("/e?q=kwh&unit=kwargs") == "/e?q=kwh&unit=kwargs"
