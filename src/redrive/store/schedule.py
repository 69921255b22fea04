"""The retry schedule's members: how ``schedule_retry.lua`` packs a retry, read back.

A member of ``retry:{S}:<group>:due`` is a retry entry's flat field list
``[name, value, ...]`` packed by Lua's ``cmsgpack.pack`` (binary-safe, so non-UTF-8
payloads survive); ``promote_due.lua`` unpacks it into the retry stream when it is due.
Readers outside Lua (the read model in :mod:`redrive.verify`, the canary) decode it here,
with no msgpack dependency.

Example::

    for member in client.zrange(keys.retry_due(stream, group), 0, -1):
        origin = member_fields(member).get(fields.ORIGIN_ID.key)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import redis

# msgpack tag -> width of its length field: array 16/32; str 8/16/32 and bin 8/16/32.
_ARRAY_WIDTHS = {0xDC: 2, 0xDD: 4}
_STRING_WIDTHS = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}
_FIXARRAY = (0x90, 0x0F)
_FIXSTR = (0xA0, 0x1F)


def unpack_strings(data: bytes) -> list[bytes]:
    """Decode a msgpack array of strings (how ``schedule_retry.lua`` packs a retry).

    Only the types ``cmsgpack.pack`` emits for a Lua array of strings are understood;
    anything else raises ``ValueError``.

    Example::

        unpack_strings(b"\\x92\\xa1a\\xa1b") == [b"a", b"b"]
    """
    count, pos = _header(data, 0, fix=_FIXARRAY, sized=_ARRAY_WIDTHS)
    out: list[bytes] = []
    for _ in range(count):
        size, pos = _header(data, pos, fix=_FIXSTR, sized=_STRING_WIDTHS)
        if pos + size > len(data):
            raise ValueError(f"string of {size} bytes at byte {pos} runs past the end")
        out.append(data[pos : pos + size])
        pos += size
    return out


def member_fields(member: bytes) -> dict[bytes, bytes]:
    """A schedule member as ``{field: value}`` (the last of a repeated name wins)."""
    flat = unpack_strings(member)
    return dict(zip(flat[::2], flat[1::2], strict=False))


def scheduled(client: redis.Redis, due: str) -> Iterator[dict[bytes, bytes]]:
    """The field dicts of every retry waiting in the schedule ``due``, soonest first."""
    for member in cast(list[bytes], client.zrange(due, 0, -1)):
        yield member_fields(member)


def _header(
    data: bytes, pos: int, *, fix: tuple[int, int], sized: dict[int, int]
) -> tuple[int, int]:
    if pos >= len(data):
        raise ValueError(f"msgpack data ends at byte {pos}, a header was expected")
    tag = data[pos]
    base, mask = fix
    if tag & ~mask == base:
        return tag & mask, pos + 1
    width = sized.get(tag)
    if width is None:
        raise ValueError(f"unexpected msgpack tag 0x{tag:02x} at byte {pos}")
    if pos + 1 + width > len(data):
        raise ValueError(f"msgpack length at byte {pos} runs past the end")
    return int.from_bytes(data[pos + 1 : pos + 1 + width], "big"), pos + 1 + width
