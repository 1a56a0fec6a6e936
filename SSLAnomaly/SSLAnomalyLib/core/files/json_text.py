"""JSON as the product writes it, valid for a strict parser. A file name that is not UTF-8 (b'caf\\xe9.png'
from a Latin-1 system) is held by Python with a lone surrogate for each such byte (os.fsdecode: 0xE9 as
U+DCE9), which json.dumps writes as "\\udce9": Python reads that back, but a strict parser, and other
languages', rejects a lone surrogate. Such a byte is written instead as the text \\xNN ('caf\\xe9.png'), as
every printed name shows it (outputs.shown); the raw bytes are not kept, since no reader of these files
opens an input by its recorded name (`--resume` compares names this way too, and decides by the bytes)."""

from __future__ import annotations

import json
import re

SURROGATE = re.compile("[\ud800-\udfff]")  # in a str, a surrogate is always a lone one


def visible(text: str) -> str:
    """`text` with each lone surrogate written as text: a byte that was not UTF-8 as \\xNN, any other as \\uNNNN."""
    return SURROGATE.sub(lambda m: f"\\x{ord(m[0]) - 0xDC00:02x}" if 0xDC80 <= ord(m[0]) <= 0xDCFF
                         else f"\\u{ord(m[0]):04x}", text)


def strict(value):
    """`value` (what json.dumps takes) with every string in it, keys too, `visible`."""
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {strict(k): strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def dumps(value, **kwargs) -> str:
    """json.dumps of `strict(value)`."""
    return json.dumps(strict(value), **kwargs)
