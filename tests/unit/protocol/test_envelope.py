"""The JSON envelope: always all four keys, typed data, pagination."""

from __future__ import annotations

import json

from kaiwa.protocol.envelope import Envelope, Pagination


def test_empty_envelope_has_all_four_keys() -> None:
    assert json.loads(Envelope[int]().model_dump_json()) == {
        "data": None,
        "message": None,
        "error_code": 0,
        "pagination": None,
    }


def test_error_envelope() -> None:
    envelope = Envelope[int](message="Chat 12 not found", error_code=10003)
    assert json.loads(envelope.model_dump_json()) == {
        "data": None,
        "message": "Chat 12 not found",
        "error_code": 10003,
        "pagination": None,
    }


def test_data_is_validated_against_its_type() -> None:
    envelope = Envelope[list[int]].model_validate_json('{"data": [1, "2"]}')
    assert envelope.data == [1, 2]


def test_paginated_envelope_round_trips() -> None:
    page = Pagination(
        limit=20,
        offset=20,
        total_records=45,
        total_pages=3,
        current_page=2,
        next_page="https://kaiwa.example/api/v1/chats?limit=20&offset=40",
        prev_page="https://kaiwa.example/api/v1/chats?limit=20&offset=0",
    )
    envelope = Envelope[list[str]](data=["会話"], pagination=page)
    assert Envelope[list[str]].model_validate_json(envelope.model_dump_json()) == envelope
    assert json.loads(envelope.model_dump_json())["pagination"]["current_page"] == 2


def test_pagination_links_default_to_null() -> None:
    page = Pagination(limit=20, offset=0, total_records=1, total_pages=1, current_page=1)
    assert (page.next_page, page.prev_page) == (None, None)
