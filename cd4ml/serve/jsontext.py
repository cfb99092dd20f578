"""JSON text of what the server answers and logs, made by orjson.

The server writes rows as objects (``[{"name": value}, ...]``) twice per request: the class
probabilities in the answer and the inputs in the prediction log. For a 1,000-row batch of 30
numbers the standard library spent 25–40 ms of CPU on the log line alone (writing floats as
text is most of it), several times the model's time; orjson does it in a few milliseconds, a
dict per row included. The text is the same JSON (same keys, values, types and order), though
not always the same characters: orjson writes ``1e-5`` where ``json`` writes ``1e-05``.

orjson writes NaN and infinity as ``null``, refuses integers beyond 64 bits and writes text as
UTF-8, where ``json`` writes ``NaN``/``Infinity``, any integer, and ASCII only (a reader that
splits lines on U+2028 as Python's ``str.splitlines`` does must not see one raw). So the text
falls back to ``json`` for a huge integer or any non-ASCII character, and, for a model's
outputs (checked inputs are finite, outputs may not be), whenever orjson wrote a ``null``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

#: rows encoded in one call of orjson (~0.3 ms for rows of 30 numbers)
PIECE = 100


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def records(names: list[str], rows: list) -> bytes:
    """``rows`` as JSON objects keyed by ``names``, comma-separated: the JSON ``json.dumps``
    makes of ``[dict(zip(names, r)) for r in rows]`` (without the brackets). Floats are finite,
    as the request checks make them."""
    # a piece at a time: one C call over a whole batch would hold the GIL for milliseconds
    return b",".join([_objects(names, rows[i:i + PIECE]) for i in range(0, len(rows), PIECE)])


def _objects(names: list[str], rows: list) -> bytes:
    objects = [dict(zip(names, r)) for r in rows]
    try:
        text = orjson.dumps(objects)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits (an int feature may take one)
        return _json(objects)[1:-1]
    return (text if text.isascii() else _json(objects))[1:-1]


def values(value: Any) -> bytes:
    """A model's output (a list of labels or numbers) as JSON, NaN and infinity spelled as
    ``json`` spells them."""
    try:
        text = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return _json(value)
    # (a label "null" also lands here: slower, still right)
    return _json(value) if b"null" in text or not text.isascii() else text
