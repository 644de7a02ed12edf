"""Detection of Swedish personal identity numbers (personnummer, samordningsnummer, and the interim
numbers schools give pupils without one), in any form a keyboard or a source system produces.

A number is 6 or 8 digits (YYMMDD or CCYYMMDD, century 18, 19 or 20), an optional separator of up
to three dashes, pluses or spaces, and a four-character serial: four digits, or an interim number's
letter and three digits (`YYMMDD-T220`; the letter reads as 1 in the check). It must be a real
birth date (day + 60 for a samordningsnummer), a birth number other than 000 (never issued) and
pass the Luhn check. Letters may touch it on either side (`R19850106…`, `P850107-…`); digits may
not: a longer digit run is a code, not a number. Two shapes are read as parts of codes and
hashes, never as numbers (docs/decisions.md): a number inside a run of 32 or more hex characters
(a pseudonym is 64: about one in 600 holds a digit run that passes the date and Luhn checks by
chance), and a number whose letters in front are themselves preceded by a digit (`9fe8112189876`,
the middle of a hex string).

Text other than ASCII is first read character by character as a keyboard would mean it: Unicode
compatibility normalisation (NFKC: full-width digits and letters), every decimal digit class as its
digit, every dash (Pd, U+2212) and space (Zs, NBSP) as a separator. Each character stands for one
ASCII character, so positions found are positions in the original text.

Pure ASCII bytes are scanned as bytes: each byte is first mapped to its class (digit, separator,
letter, interim letter, boundary) with bytes.translate, so the search is a literal-prefixed regex
over a class string. A plain regex over 64-hex pseudonyms backtracks at every digit and costs
seconds per million rows.
"""

from __future__ import annotations

import codecs
import itertools
import re
import unicodedata
from collections.abc import Iterator
from datetime import date
from functools import lru_cache

CENTURIES = ("18", "19", "20")
#: The letters an interim number carries in its serial (the personnummer project's list).
INTERIM_LETTERS = "TRSUWXJKLMN"
SEPARATORS = " \t-+"
HASH_RUN = 32  # a run of this many hex characters or more is a hash or a UUID, not text with a number in it
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _class_table() -> bytes:
    table = bytearray(b"x" * 256)  # everything else is a boundary
    for b in b"0123456789":
        table[b] = ord("0")
    # Separators and letters other than hex share a class: both may stand in front of a number,
    # a serial may start with a letter, and which one stands where is checked on the bytes.
    for b in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" + SEPARATORS.encode():
        table[b] = ord("S")
    for b in b"abcdefABCDEF":
        table[b] = ord("h")
    return bytes(table)


_CLASSES = _class_table()
# In class space: 6 or 8 digits, up to three separators, a serial of 4 digits or a letter and 3
# digits, then no further digit. In front: a boundary, a separator or a letter, or a run of hex
# letters that follows one of those (a pseudonym's digits follow hex letters that follow digits,
# so they never match). One pattern per literal start, so that the regex engine skips ahead with
# a fast prefix search instead of trying every position (a charset would try each comma).
_BODY = rb"(000000(?:00)?)S{0,3}([0S]000)(?!0)"
_SHAPES = tuple(re.compile(prefix + _BODY) for prefix in (rb"x", rb"S", rb"xh++", rb"Sh++"))
_AT_START = re.compile(rb"h*+" + _BODY)  # the first line of a block has nothing in front
_SEPARATOR_BYTES = frozenset(SEPARATORS.encode())


def luhn_ok(digits: str) -> bool:
    """The Luhn check over YYMMDD + serial: weights 2, 1, 2, 1, … from the left."""
    total = 0
    for i, ch in enumerate(digits):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _date_ok(yymmdd: str, century: str | None) -> bool:
    yy, mm, dd = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:6])
    if dd > 60:  # samordningsnummer: birth day + 60
        dd -= 60
    # Without a century, 20YY stands for 19YY too: 29 February exists in both or in neither, except
    # in 1900 (not a leap year) where 2000 is one, so 000229 counts.
    year = int(century or "20") * 100 + yy
    try:
        date(year, mm, dd)
    except ValueError:
        return False
    return True


def is_identity_number(head: str, serial: str) -> bool:
    """head: the 6 or 8 digits before the (optional) separator; serial: the last four, 4 digits or
    an interim number's letter and 3 digits."""
    if len(head) == 8 and head[:2] not in CENTURIES:
        return False
    if serial[:3] == "000":  # never issued
        return False
    if not serial[0].isdigit():
        if serial[0].upper() not in INTERIM_LETTERS:
            return False
        serial = "1" + serial[1:]
    century = head[:2] if len(head) == 8 else None
    yymmdd = head[-6:]
    return _date_ok(yymmdd, century) and luhn_ok(yymmdd + serial)


def _hex_run(data: bytes, start: int, end: int) -> int:
    """How many hex characters the run around data[start:end] (itself all hex) holds. Single dashes
    between hex characters continue the run, so a UUID (8-4-4-4-12) counts as the 32 it holds."""
    count = end - start
    while start > 0 and (data[start - 1] in _HEX or (start > 1 and data[start - 1] == 45 and data[start - 2] in _HEX)):
        start -= 1
        count += data[start] != 45
    while end < len(data) and (data[end] in _HEX or (end + 1 < len(data) and data[end] == 45 and data[end + 1] in _HEX)):
        count += data[end] != 45
        end += 1
    return count


def _ascii_spans(data: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each identity number in ASCII bytes; letters glued to it are not part of it."""
    classes = data.translate(_CLASSES)
    first = _AT_START.match(classes)
    for m in itertools.chain((first,) if first else (), *(shape.finditer(classes) for shape in _SHAPES)):
        (head_start, head_end), (serial_start, end) = m.span(1), m.span(2)
        if any(b not in _SEPARATOR_BYTES for b in data[head_end:serial_start]):
            continue  # letters between the parts: not a separator
        head, serial = data[head_start:head_end].decode("ascii"), data[serial_start:end].decode("ascii")
        if not is_identity_number(head, serial):
            continue
        # Inside a run of hex characters as long as a hash: part of the hash (a pseudonym).
        if head_end == serial_start and serial[0].isdigit():
            if _hex_run(data, head_start, end) >= HASH_RUN:
                continue
        elif _hex_run(data, head_start, head_end) >= HASH_RUN or _hex_run(data, serial_start + 1, end) >= HASH_RUN:
            continue
        yield head_start, end


@lru_cache(maxsize=4096)
def _ascii_stand_in(char: str) -> str:
    """The one ASCII character a non-ASCII character stands for in the scan."""
    folded = unicodedata.normalize("NFKC", char)
    if len(folded) == 1 and folded.isascii():
        return folded if folded.isprintable() else " "
    digit = unicodedata.digit(char, None)
    if digit is None and len(folded) == 1:
        digit = unicodedata.digit(folded, None)
    if digit is not None:
        return str(digit)
    category = unicodedata.category(char)
    if category == "Pd" or char == "\u2212":  # every dash, and the minus sign
        return "-"
    if category in ("Zs", "Cf"):  # every space; invisible format characters (soft hyphen, ZWSP)
        return " "
    if category.startswith("L"):
        return "z"  # a letter: glues like one, never an interim letter or a hex digit
    return "_"


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _stand_in(text: str) -> bytes:
    return _NON_ASCII.sub(lambda m: _ascii_stand_in(m[0]), text).encode("ascii")


def identity_number_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) in `text` of each identity number it holds, in any form."""
    spans = sorted(_ascii_spans(text.encode("ascii") if text.isascii() else _stand_in(text)))
    return [span for i, span in enumerate(spans) if i == 0 or span[0] >= spans[i - 1][1]]


def contains_identity_number(text: str) -> bool:
    return bool(identity_number_spans(text))


_ASCII = bytes(range(128))
_CP1252_STAND_INS = bytes(range(128)) + "".join(
    _ascii_stand_in(bytes([b]).decode("cp1252", errors="replace")) for b in range(128, 256)).encode("ascii")


def _stand_in_bytes(data: bytes, encoding: str) -> bytes:
    """`data` with each non-ASCII character replaced by the one ASCII byte it stands for. Positions
    move (a UTF-8 character is several bytes), which a yes-or-no scan does not mind."""
    if codecs.lookup(encoding).name == "cp1252":
        return data.translate(_CP1252_STAND_INS)
    # UTF-8 (a byte order mark is U+FEFF, a format character): one replace per distinct character,
    # found among the bytes left once ASCII is deleted; each a C pass, where a regex callback per
    # character cost twice as much on Swedish text.
    distinct = set(data.translate(None, _ASCII).decode("utf-8", errors="replace"))
    if len(distinct) > 256:
        return _stand_in(data.decode("utf-8", errors="replace"))
    for char in distinct:
        data = data.replace(char.encode("utf-8", errors="ignore"), _ascii_stand_in(char).encode("ascii"))
    return data


def bytes_contain_identity_number(data: bytes, encoding: str = "utf-8") -> bool:
    """True when `data` (whole lines of a file in `encoding`: UTF-8 or Windows-1252) holds an
    identity number. Pure ASCII, the common case, is scanned as it is."""
    if not data.isascii():
        data = _stand_in_bytes(data, encoding)
    return next(_ascii_spans(data), None) is not None


def redact_identity_numbers(text: str, replacement: str = "[redacted]") -> str:
    out, last = [], 0
    for start, end in identity_number_spans(text):
        out += [text[last:start], replacement]
        last = end
    return "".join(out) + text[last:]
