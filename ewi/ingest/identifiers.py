"""Detection of Swedish personal identity numbers (personnummer and samordningsnummer).

A match needs the shape (10 or 12 digits, optionally with - or + before the last four), a real
birth date (day + 60 for a samordningsnummer) and a valid Luhn check digit. Digit runs glued to
letters or to longer digit runs are not candidates: they are parts of pseudonyms and codes, and
flagging them would reject legitimate deliveries.

Files are scanned as bytes: each byte is first mapped to its class (digit, letter, separator,
boundary) with bytes.translate, so the search is a literal-prefixed regex over a class string.
A plain regex over 64-hex pseudonyms backtracks at every digit and costs seconds per million rows.
"""

from __future__ import annotations

import re
from datetime import date

CANDIDATE_RE = re.compile(r"(?<![0-9A-Za-z])((?:18|19|20)?[0-9]{6})[-+]?([0-9]{4})(?![0-9A-Za-z])")


def _class_table() -> bytes:
    table = bytearray(b" " * 256)  # everything else is a boundary
    for b in b"0123456789":
        table[b] = ord("0")
    for b in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
        table[b] = ord("a")
    table[ord("-")] = table[ord("+")] = ord("-")
    return bytes(table)


_CLASSES = _class_table()
# In class space: a boundary (space or separator), 6 or 8 digits, an optional separator, 4 digits,
# a boundary. The literal prefix lets the regex engine skip ahead with a fast substring search.
_SHAPES = (re.compile(rb" (000000(?:00)?-?0000)(?=[ -])"), re.compile(rb"-(000000(?:00)?-?0000)(?=[ -])"))


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(digits):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _date_ok(yymmdd: str, century: str | None) -> bool:
    yy, mm, dd = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:6])
    if dd > 60:  # samordningsnummer: birth day + 60
        dd -= 60
    year = int(century + yymmdd[:2]) if century else 2000 + yy
    try:
        date(year, mm, dd)
    except ValueError:
        # Without a century, 29 February may belong to a leap year of the 1900s.
        if century or not (mm == 2 and dd == 29):
            return False
        try:
            date(1900 + yy, mm, dd)
        except ValueError:
            return False
    return True


def is_identity_number(head: str, tail: str) -> bool:
    """head: the 6 or 8 digits before the (optional) separator; tail: the last four."""
    if len(head) == 8 and head[:2] not in ("18", "19", "20"):
        return False
    century = head[:2] if len(head) == 8 else None
    yymmdd = head[-6:]
    return _date_ok(yymmdd, century) and luhn_ok(yymmdd + tail)


def bytes_contain_identity_number(data: bytes) -> bool:
    """True when `data` (ASCII-compatible bytes: UTF-8 or Windows-1252) holds an identity number."""
    classes = b" " + data.translate(_CLASSES) + b" "
    for shape in _SHAPES:
        for m in shape.finditer(classes):
            start, end = m.start(1) - 1, m.end(1) - 1  # offsets in data (one byte was prepended)
            token = data[start:end].decode("ascii")
            digits = token.replace("-", "").replace("+", "")
            if len(token) - len(digits) > 1 or len(digits) not in (10, 12):
                continue
            if is_identity_number(digits[:-4], digits[-4:]):
                return True
    return False


def contains_identity_number(text: str) -> bool:
    return bytes_contain_identity_number(text.encode("utf-8"))
