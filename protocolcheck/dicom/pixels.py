"""Is the Pixel Data whole? One check for both header readers (the lean one and pydicom).

Neither reader loads pixels, but a file whose pixels are cut short, or whose Pixel Data is shorter than
its own header says the image is, is a damaged acquisition that must not pass an audit quietly:

- native (uncompressed) pixels: the element must hold rows x columns x bits allocated x samples per
  pixel x frames bits (PS3.5 8.1.1), and the file must hold the element's declared length;
- encapsulated (compressed) pixels: a Basic Offset Table item, then fragment items, then the sequence
  delimiter, every item inside the file, and at least one fragment per frame (PS3.5 A.4).

A problem is a text starting with ``PixelData:``; the readers add it to ``value_problems`` and the audit
reports it as ``truncated-pixel-data``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

PIXEL_PROBLEM_PREFIX = "PixelData:"
MAX_FRAGMENTS = 1_000_000  # items walked before the structure is called implausible (bounds the walk)
_UNDEFINED = 0xFFFFFFFF
_ITEM = (0xFFFE, 0xE000)
_SEQUENCE_END = (0xFFFE, 0xE0DD)


@dataclass(frozen=True)
class ImageSize:
    """What the header says the pixels are (None: not stated, not checked)."""

    rows: int | None
    columns: int | None
    bits_allocated: int | None
    samples_per_pixel: int | None
    frames: int | None

    def expected_bytes(self) -> int | None:
        """Bytes of native Pixel Data the header calls for, or None when a factor is missing or absurd."""
        rows, columns, bits_allocated = self.rows, self.columns, self.bits_allocated
        if rows is None or columns is None or bits_allocated is None or min(rows, columns, bits_allocated) <= 0:
            return None
        samples = self.samples_per_pixel if self.samples_per_pixel and self.samples_per_pixel > 0 else 1
        frames = self.frames if self.frames and self.frames > 0 else 1
        bits = int(rows) * int(columns) * int(bits_allocated) * samples * frames
        return (bits + 7) // 8

    def describe(self) -> str:
        samples = self.samples_per_pixel or 1
        frames = self.frames or 1
        return (f"{self.rows} rows x {self.columns} columns x {self.bits_allocated} bits x {samples} "
                f"sample{'s' if samples != 1 else ''} x {frames} frame{'s' if frames != 1 else ''}")


def pixel_data_problem(read_at: Callable[[int, int], bytes], file_size: int, value_offset: int, length: int,
                       size: ImageSize, *, little: bool = True) -> str | None:
    """The problem with a Pixel Data element (7FE0,0010) whose value starts at ``value_offset`` with the
    declared ``length`` (0xFFFFFFFF: encapsulated), or None. ``read_at(offset, n)`` reads the file."""
    available = max(0, file_size - value_offset)
    if length != _UNDEFINED:
        if available < length:
            return f"{PIXEL_PROBLEM_PREFIX} truncated ({available} of {length} bytes present)"
        expected = size.expected_bytes()
        if expected is not None and length < expected:
            return (f"{PIXEL_PROBLEM_PREFIX} shorter than the image ({length} of {expected} bytes: "
                    f"{size.describe()})")
        return None
    return _fragments_problem(read_at, file_size, value_offset, size.frames or 1, little)


def _fragments_problem(read_at: Callable[[int, int], bytes], file_size: int, pos: int, frames: int,
                       little: bool) -> str | None:
    order: Literal["little", "big"] = "little" if little else "big"
    items = 0
    while True:
        head = read_at(pos, 8) if pos + 8 <= file_size else b""
        if len(head) < 8:
            return (f"{PIXEL_PROBLEM_PREFIX} encapsulated pixels cut short (the file ends after "
                    f"{max(0, items - 1)} fragment{'s' if items != 2 else ''}, without the sequence delimiter)")
        tag = (int.from_bytes(head[0:2], order), int.from_bytes(head[2:4], order))
        item_length = int.from_bytes(head[4:8], order)
        if tag == _SEQUENCE_END:
            fragments = max(0, items - 1)
            if items == 0:
                return f"{PIXEL_PROBLEM_PREFIX} encapsulated pixels without a Basic Offset Table item"
            if fragments == 0:
                return f"{PIXEL_PROBLEM_PREFIX} encapsulated pixels hold no fragment"
            if fragments < frames:
                return f"{PIXEL_PROBLEM_PREFIX} {fragments} fragments for {frames} frames (frames are missing)"
            return None
        if tag != _ITEM or item_length == _UNDEFINED:
            return (f"{PIXEL_PROBLEM_PREFIX} encapsulated pixels malformed (item {items} is not a fragment: "
                    f"({tag[0]:04X},{tag[1]:04X}))")
        end = pos + 8 + item_length
        if end > file_size:
            return (f"{PIXEL_PROBLEM_PREFIX} truncated (fragment {max(0, items - 1)}: {file_size - pos - 8} of "
                    f"{item_length} bytes present)" if items else
                    f"{PIXEL_PROBLEM_PREFIX} truncated (offset table: {file_size - pos - 8} of {item_length} "
                    "bytes present)")
        items += 1
        if items > MAX_FRAGMENTS:
            return f"{PIXEL_PROBLEM_PREFIX} encapsulated pixels in more than {MAX_FRAGMENTS} fragments (implausible)"
        pos = end
