"""Size bounds on what input controls, in one place: how far a deflated dataset may inflate.

Deflated Explicit VR Little Endian (PS3.5 A.5) compresses the whole dataset after the file meta; pydicom
and pynetdicom inflate it in one call, so a small upload or file can ask for gigabytes (a deflate bomb:
~1000x). Every path that meets a deflated dataset (files: :mod:`.reader`; network: ``net``) inflates it
through :func:`inflate` or :func:`inflated_size` first, incrementally, and refuses it past
:func:`inflate_limit` of its compressed size.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

DEFLATED_SYNTAX = "1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian (PS3.5 A.5)
MIN_INFLATE_LIMIT = 4 << 20  # a deflated dataset may always expand this far (pydicom parses 32 MB in ~2 s) ...
INFLATE_RATIO_LIMIT = 50  # ... or to this many times its compressed size (real data: 2-10x; a bomb: ~1000x)
_STEP = 1 << 20  # inflate at most this much per call: the check itself stays bounded


class InflateLimitExceeded(ValueError):
    """A deflated dataset expands beyond :func:`inflate_limit` (a deflate bomb?)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"deflated dataset expands beyond {limit >> 20} MB (a deflate bomb?); not read")
        self.limit = limit


class InflateTruncated(ValueError):
    """A deflate stream that stops before its end marker (the dataset was cut short)."""


def inflate_limit(compressed_size: int) -> int:
    """How many bytes a deflated dataset of ``compressed_size`` bytes may inflate to."""
    return max(MIN_INFLATE_LIMIT, INFLATE_RATIO_LIMIT * max(0, compressed_size))


class _Inflated:
    """Inflated output counted against ``limit`` (and kept, with ``keep``)."""

    def __init__(self, limit: int, keep: bool) -> None:
        self.limit = limit
        self.keep = keep
        self.total = 0
        self.parts: list[bytes] = []

    def add(self, out: bytes) -> None:
        self.total += len(out)
        if self.total > self.limit:
            raise InflateLimitExceeded(self.limit)
        if self.keep:
            self.parts.append(out)


def _inflate(read: Callable[[int], bytes], limit: int, keep: bool, complete: bool = False) -> tuple[int, bytes]:
    """Inflate the raw deflate stream ``read`` yields, counting (and, with ``keep``, keeping) the output;
    raises :class:`InflateLimitExceeded` past ``limit`` and, with ``complete``, :class:`InflateTruncated`
    when the stream stops before its end. A corrupt stream raises ``zlib.error``."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    output = _Inflated(limit, keep)
    while not inflater.eof and (chunk := read(1 << 16)):
        while chunk and not inflater.eof:
            out = inflater.decompress(chunk, _STEP)
            output.add(out)
            if not out and len(inflater.unconsumed_tail) >= len(chunk):
                break  # no progress (zlib wants more input): read the next block
            chunk = inflater.unconsumed_tail
    while not inflater.eof:  # input exhausted: drain what zlib still holds, within the limit
        out = inflater.decompress(b"", _STEP)
        if not out:
            break
        output.add(out)
    if complete and not inflater.eof:
        raise InflateTruncated(f"deflated dataset cut short: the deflate stream stops after {output.total} inflated "
                               "bytes")
    return output.total, b"".join(output.parts)


def inflated_size(read: Callable[[int], bytes], limit: int) -> int:
    """The inflated size of the raw deflate stream ``read(n)`` yields, without keeping it; raises
    :class:`InflateLimitExceeded` as soon as it passes ``limit`` (a bomb is never inflated whole)."""
    return _inflate(read, limit, keep=False)[0]


def inflate(data: bytes, limit: int | None = None, *, complete: bool = False) -> bytes:
    """``data`` (a raw deflate stream, as in a deflated dataset) inflated, at most ``limit`` bytes
    (default :func:`inflate_limit` of ``len(data)``); raises :class:`InflateLimitExceeded` beyond it and,
    with ``complete``, :class:`InflateTruncated` when the stream stops before its end."""
    view = memoryview(data)
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        chunk = bytes(view[pos:pos + n])
        pos += len(chunk)
        return chunk

    return _inflate(read, inflate_limit(len(data)) if limit is None else limit, keep=True, complete=complete)[1]
