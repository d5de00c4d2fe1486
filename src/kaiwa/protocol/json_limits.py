"""How deeply JSON from a client may nest, and a parser that holds it to that.

Every JSON value a client sends, as a body, a form part, a token or a field stored for later
(agent `meta`, a tool, form values), nests at most `MAX_JSON_DEPTH` levels of objects and
arrays. Deeper values are refused up front: Python's `json` raises `RecursionError` (not
`ValueError`) a thousand levels down, and a value a few hundred levels deep that was parsed and
stored fails later, when it is serialized for the response.

    >>> parse_json('{"scope": "ephemeral"}')
    {'scope': 'ephemeral'}
    >>> too_deep({"a": [1]}, max_depth=1)
    True
"""

from __future__ import annotations

from pydantic_core import from_json

__all__ = ["MAX_JSON_DEPTH", "parse_json", "too_deep"]

MAX_JSON_DEPTH = 64
"""Levels of objects and arrays: far above any real agent meta, tool or form schema, far below
where parsing or serializing runs out of stack."""


def too_deep(value: object, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether `value` (parsed JSON) nests objects and arrays more than `max_depth` levels.

    Level by level rather than recursive, so that any depth is measured safely.

    >>> too_deep([[]], max_depth=2), too_deep([[[]]], max_depth=2)
    (False, True)
    """
    level: list[object] = [value]
    for _ in range(max_depth + 1):
        below: list[object] = []
        nested = False
        for item in level:
            if isinstance(item, dict):
                below.extend(item.values())
            elif isinstance(item, list | tuple):
                below.extend(item)
            else:
                continue
            nested = True
        if not nested:
            return False
        level = below
    return True


def parse_json(raw: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> object:
    """Strict JSON nested at most `max_depth` levels; else `ValueError`, never `RecursionError`.

    The parser itself stops at 200 levels, and refuses the `NaN` and `Infinity` literals.
    """
    value = from_json(raw, allow_inf_nan=False)
    if too_deep(value, max_depth):
        raise ValueError(f"JSON nested more than {max_depth} levels deep")
    return value
