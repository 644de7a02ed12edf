"""Detection of Swedish personal identity numbers (personnummer and samordningsnummer).

A match needs the shape (10 or 12 digits, optionally with - or + before the last four), a real
birth date (day + 60 for a samordningsnummer) and a valid Luhn check digit. Digit runs glued to
letters or longer digit runs are not candidates: they are parts of pseudonyms and codes, and
flagging them would reject legitimate deliveries.
"""

from __future__ import annotations

import re
from datetime import date

CANDIDATE_RE = re.compile(r"(?<![0-9A-Za-z])((?:18|19|20)?[0-9]{6})[-+]?([0-9]{4})(?![0-9A-Za-z])")


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
    century = head[:2] if len(head) == 8 else None
    yymmdd = head[-6:]
    return _date_ok(yymmdd, century) and luhn_ok(yymmdd + tail)


def contains_identity_number(text: str) -> bool:
    return any(is_identity_number(m[1], m[2]) for m in CANDIDATE_RE.finditer(text))
