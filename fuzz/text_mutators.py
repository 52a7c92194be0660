"""Mutators for the text inputs: protocol/rules YAML and clinical-context CSV.

Line-level edits (delete, duplicate, swap, indent), hostile scalars (.nan, -.inf, huge numbers, tags
that only an unsafe loader would honour, anchors and alias bombs), deep nesting, bad encodings (Latin-1
bytes, NUL, BOM, lone surrogates), CSV quoting and delimiter damage.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

TextMutator = Callable[[random.Random, bytes, Sequence[bytes]], bytes]

YAML_SCALARS = (
    ".nan", "-.inf", ".inf", "~", "null", "[]", "{}", "''", '""', "-1", "0", "1e999", "99999999999999999999999",
    "0x7fffffff", "0o777", "yes", "no", "on", "true", "2026-02-30", "2026-01-01", "12:30:45", "!!binary aGVsbG8=",
    "!!python/object/apply:os.system ['true']", "!!python/name:os.system", "!!set {a, b}", "!!omap [a: 1]",
    "&a [*a]", "*undefined_alias", "!!float nan", "!!int abc", "!!str", "? complex\n  : key", "[1, [2, [3]]]",
    "{a: {b: {c: {}}}}", "\"\\ud800\"", "\"\\x00\"", "|\n  block\n  text", ">-\n  folded", "'unterminated",
    "[unterminated", "\t tab", "*", "&", "!", "%YAML 1.1", "---", "...", "@reserved", "`backtick",
    "a" * 5000, "T2\\FS", "(?P<x>", "[a-", "(" * 200, "ä€𝄞", "\u202e", "\ufeff",
)
CSV_CELLS = (
    "", " ", "yes", "no", "maybe", "nan", "inf", "-1", "1e999", "2026-02-30", "9999-12-31", "0000-00-00", "20260101",
    "2026/01/01", "\"", "\"\"", "\"a,b\"", "a,b", "a;b", "a\tb", "\x00", "\r", "\n", "\u2028", "ä€", "𝄞",
    "=CMD()", "@SUM(1)", "x" * 200000, "G54.1", "S34.4XXA", "M54.16 G57.01 G54.1", "\ufeff", "N/A", "TRUE", "1",
)
CSV_COLUMNS = ("accession_number", "study_instance_uid", "trauma_date", "indication", "mri_contraindicated",
               "gadolinium_contraindicated", "egfr", "dermatomal", "known_malignancy", "prior_radiation",
               "iodinated_contrast_contraindicated", "ACCESSION_NUMBER", " accession_number ", "", "unknown_col",
               "accession_number")


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def delete_lines(rng: random.Random, data: bytes, _donors: Sequence[bytes]) -> bytes:
    lines = _lines(data)
    if len(lines) < 2:
        return b""
    start = rng.randrange(len(lines))
    del lines[start:start + rng.choice((1, 1, 2, 5, 20))]
    return b"\n".join(lines)


def duplicate_lines(rng: random.Random, data: bytes, _donors: Sequence[bytes]) -> bytes:
    lines = _lines(data)
    start = rng.randrange(len(lines))
    chunk = lines[start:start + rng.choice((1, 2, 5))]
    at = rng.randrange(len(lines) + 1)
    return b"\n".join(lines[:at] + chunk + lines[at:])


def swap_lines(rng: random.Random, data: bytes, _donors: Sequence[bytes]) -> bytes:
    lines = _lines(data)
    if len(lines) < 2:
        return data
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


def reindent(rng: random.Random, data: bytes, _donors: Sequence[bytes]) -> bytes:
    lines = _lines(data)
    i = rng.randrange(len(lines))
    lines[i] = rng.choice((b"", b" ", b"  ", b"\t", b"      ")) + lines[i].lstrip(b" ")
    return b"\n".join(lines)


def yaml_scalar(rng: random.Random, data: bytes, _donors: Sequence[bytes]) -> bytes:
    """The value after a ``key:`` (or a list item's value) replaced by a hostile YAML scalar."""
    lines = _lines(data)
    candidates = [i for i, line in enumerate(lines) if b":" in line or line.lstrip().startswith(b"- ")]
    if not candidates:
        return data
    i = rng.choice(candidates)
    line = lines[i]
    scalar = rng.choice(YAML_SCALARS).encode("utf-8", "surrogatepass")
    if b":" in line and rng.random() < 0.8:
        key = line.split(b":", 1)[0]
        lines[i] = key + b": " + scalar
    else:
        indent = line[:len(line) - len(line.lstrip())]
        lines[i] = indent + b"- " + scalar
    return b"\n".join(lines)


def yaml_key(rng: random.Random, data: bytes, _donors: Sequence[bytes]) -> bytes:
    """A key renamed, made non-string, or a mapping turned into a list (and vice versa)."""
    lines = _lines(data)
    candidates = [i for i, line in enumerate(lines) if b":" in line]
    if not candidates:
        return data
    i = rng.choice(candidates)
    key, _sep, rest = lines[i].partition(b":")
    indent = key[:len(key) - len(key.lstrip())]
    new_key = rng.choice((b"1", b"[a, b]", b"{x: 1}", b"null", b"''", b"id", b"kind", b"requirements", b"match",
                          b"? [x]", b"&anchor id", b"<<", key.strip() + b"_x", key.strip().upper(),
                          b"- " + key.strip()))
    lines[i] = indent + new_key + b":" + rest
    return b"\n".join(lines)


def yaml_bomb(rng: random.Random, data: bytes, _donors: Sequence[bytes]) -> bytes:
    """Deep nesting, alias amplification ("billion laughs") or a huge document appended or substituted."""
    depth = rng.choice((50, 500, 5000, 50000))
    kind = rng.randrange(5)
    if kind == 0:
        bomb = b"x: " + b"[" * depth + b"]" * depth
    elif kind == 1:
        bomb = b"x: " + b"{a: " * depth + b"1" + b"}" * depth
    elif kind == 2:
        bomb = b"a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        for n in range(1, 9):
            anchor, previous = bytes([97 + n]), bytes([96 + n])
            bomb += b"%s: &%s [" % (anchor, anchor) + b", ".join([b"*" + previous] * 9) + b"]\n"
    elif kind == 3:
        bomb = b"\n".join(b"  " * i + b"k%d:" % i for i in range(min(depth, 3000)))
    else:
        bomb = b"- " * min(depth, 3000) + b"x"
    if rng.random() < 0.5:
        return data + b"\n" + bomb + b"\n"
    lines = _lines(data)
    i = rng.randrange(len(lines) + 1)
    return b"\n".join(lines[:i] + [bomb] + lines[i:])


def bad_encoding(rng: random.Random, data: bytes, _donors: Sequence[bytes]) -> bytes:
    """Bytes that are not UTF-8 (Latin-1, NUL, lone continuation, UTF-16 BOM) or a BOM prepended."""
    junk = rng.choice((b"\xe9", b"\xff\xfe", b"\xfe\xff", b"\x00", b"\xc3", b"\x80\x80", b"\xed\xa0\x80",
                       b"\xef\xbb\xbf", b"\x1b[31m", b"\r", b"\x0c", b"\x85"))
    if rng.random() < 0.2:
        return junk + data
    pos = rng.randrange(len(data) + 1)
    return data[:pos] + junk + data[pos:]


def csv_cell(rng: random.Random, data: bytes, _donors: Sequence[bytes]) -> bytes:
    """One CSV cell replaced by a hostile value (unbalanced quotes, bad dates, NaN eGFR, huge field)."""
    lines = _lines(data)
    i = rng.randrange(len(lines))
    cells = lines[i].split(b",")
    j = rng.randrange(len(cells))
    cells[j] = rng.choice(CSV_CELLS).encode("utf-8")
    lines[i] = b",".join(cells)
    return b"\n".join(lines)


def csv_header(rng: random.Random, data: bytes, _donors: Sequence[bytes]) -> bytes:
    """The header line changed: column renamed, dropped, duplicated, or the delimiter changed."""
    lines = _lines(data)
    cells = lines[0].split(b",")
    action = rng.randrange(4)
    if action == 0 and cells:
        cells[rng.randrange(len(cells))] = rng.choice(CSV_COLUMNS).encode()
    elif action == 1 and len(cells) > 1:
        del cells[rng.randrange(len(cells))]
    elif action == 2:
        cells.append(rng.choice(CSV_COLUMNS).encode())
    else:
        sep = rng.choice((b";", b"\t", b"|", b" ", b"\"", b""))
        return data.replace(b",", sep)
    lines[0] = b",".join(cells)
    return b"\n".join(lines)


def line_endings(rng: random.Random, data: bytes, _donors: Sequence[bytes]) -> bytes:
    return data.replace(b"\n", rng.choice((b"\r\n", b"\r", b"\n\n", b"\x00\n", "\u2028".encode())))


def splice_text(rng: random.Random, data: bytes, donors: Sequence[bytes]) -> bytes:
    """Lines from another seed spliced in."""
    if not donors:
        return data
    donor = _lines(rng.choice(donors))
    start = rng.randrange(len(donor))
    chunk = donor[start:start + rng.choice((1, 3, 10, 40))]
    lines = _lines(data)
    at = rng.randrange(len(lines) + 1)
    return b"\n".join(lines[:at] + chunk + lines[at:])


def truncate_text(rng: random.Random, data: bytes, _donors: Sequence[bytes]) -> bytes:
    return data[:rng.randrange(len(data) + 1)]


def flip_text(rng: random.Random, data: bytes, _donors: Sequence[bytes]) -> bytes:
    if not data:
        return b"\x00"
    out = bytearray(data)
    for _ in range(rng.choice((1, 2, 4))):
        pos = rng.randrange(len(out))
        out[pos] = rng.choice((ord(":"), ord("-"), ord(" "), ord("\""), ord("'"), ord("["), ord("{"), ord("#"),
                               ord("&"), ord("*"), ord("!"), ord("\n"), ord(","), rng.randrange(256)))
    return bytes(out)


YAML_MUTATORS: tuple[tuple[TextMutator, int], ...] = (
    (delete_lines, 5), (duplicate_lines, 4), (swap_lines, 3), (reindent, 3), (yaml_scalar, 14), (yaml_key, 6),
    (yaml_bomb, 2), (bad_encoding, 2), (splice_text, 4), (truncate_text, 2), (flip_text, 4),
)
CSV_MUTATORS: tuple[tuple[TextMutator, int], ...] = (
    (delete_lines, 3), (duplicate_lines, 4), (swap_lines, 2), (csv_cell, 14), (csv_header, 5), (bad_encoding, 3),
    (line_endings, 2), (splice_text, 2), (truncate_text, 2), (flip_text, 4),
)


def mutate_text(rng: random.Random, data: bytes, donors: Sequence[bytes],
                mutators: tuple[tuple[TextMutator, int], ...]) -> tuple[bytes, list[str]]:
    """``data`` after 1-4 of ``mutators``; returns the bytes and the mutator names."""
    functions = [m for m, _w in mutators]
    weights = [w for _m, w in mutators]
    used = []
    for _ in range(rng.choice((1, 1, 2, 3, 4))):
        mutator = rng.choices(functions, weights)[0]
        data = mutator(rng, data, donors)
        used.append(mutator.__name__)
    return data, used
