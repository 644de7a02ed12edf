"""Reversible pseudonyms: a pseudonym that is an unkeyed hash of a personal identity number.

The contract's pseudonym is an HMAC keyed with a secret. An unkeyed SHA-256 (or SHA-1, MD5) of an
identity number is a direct identifier in disguise: anyone can hash the candidates of a birth year
(365 days x 1,000 birth numbers, the check digit follows) and look the pseudonyms up. This module
does exactly that, on a sample of the pending batch, and the ingest rejects the file as
`reversible_pseudonym` before the audit, so nothing of it is kept.

What is enumerated, per day of a birth year: the personnummer and the samordningsnummer (day + 60),
each with every birth number and its Luhn check digit, in four forms: 12 and 10 digits, with and
without `-` (`YYYYMMDDNNNC`, `YYYYMMDD-NNNC`, `YYMMDDNNNC`, `YYMMDD-NNNC`). The hash follows from the
pseudonym's length: 64 hex SHA-256, 40 SHA-1, 32 MD5; upper or lower case. Only the first 8 bytes of
each digest are kept and compared (a chance match of a real HMAC is below 1e-8 per file).

Cost: a birth year is about 2.9 million hashes (1.5 s of hashlib). A delivery comes from one
pseudonymisation practice, so unkeyed hashes are in (almost) every row; the check therefore tests
the pseudonyms of one birth year of a sample, against as many days of that year as make a miss of
them all less likely than MISS_PROBABILITY, and never fewer than MIN_DAYS (days spread over the
year). A small file has few pseudonyms per year and needs the whole year: the whole-year tables
are kept per process (the last CACHED_YEARS), and a file that carries a year already in the cache
is tested against all of it. docs/decisions.md says why; docs/benchmarks.md what it costs.
"""

from __future__ import annotations

import calendar
import hashlib
import math
from collections import OrderedDict
from collections.abc import Iterable
from datetime import date, timedelta

import numpy as np
from psycopg import sql

from ewi.ingest.reading import Rejection

#: Hash algorithm by the length of a pseudonym in hex digits.
ALGORITHMS = {64: "sha256", 40: "sha1", 32: "md5"}
#: Rows read from the pending batch (block sample of a large batch; all rows of a small one).
SAMPLE_ROWS = 50_000
#: Bound on missing every sampled pseudonym of the tested year if they are all unkeyed hashes.
MISS_PROBABILITY = 1e-9
#: At least this many days of a year: a file where only some pseudonyms are unkeyed is still found.
MIN_DAYS = 30
#: From this many days on, the whole year is hashed and kept for the next files.
WHOLE_YEAR_FROM_DAYS = 120
#: Whole-year tables kept per process (about 23 MB each).
CACHED_YEARS = 3
#: Bytes of each digest compared.
PREFIX_BYTES = 8

REASON = ("person_pseudonym holds unkeyed hashes of personal identity numbers, which anyone can "
          "recompute (the contract's pseudonym is a keyed HMAC); the batch was discarded")

# The Luhn sum of a birth number (positions 7-9 of the 10 digits, weights 2, 1, 2) and its digits.
_BIRTH_NUMBERS = [f"{n:03d}".encode() for n in range(1000)]


def _luhn_digit_sum(digits: str, first_weight: int) -> int:
    total = 0
    for i, ch in enumerate(digits):
        d = int(ch) * (first_weight if i % 2 == 0 else 3 - first_weight)
        total += d - 9 if d > 9 else d
    return total


_BIRTH_NUMBER_SUMS = [_luhn_digit_sum(f"{n:03d}", 2) for n in range(1000)]
_whole_years: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()


def candidates_of_day(day: date) -> list[bytes]:
    """Every identity number born on `day` (personnummer, then samordningsnummer) in the four forms."""
    out = []
    for day_of_month in (day.day, day.day + 60):
        yymmdd = f"{day.year % 100:02d}{day.month:02d}{day_of_month:02d}"
        short, long = yymmdd.encode(), f"{day.year // 100}{yymmdd}".encode()
        day_sum = _luhn_digit_sum(yymmdd, 2)
        short_dash, long_dash = short + b"-", long + b"-"
        for birth_number, birth_sum in zip(_BIRTH_NUMBERS, _BIRTH_NUMBER_SUMS, strict=True):
            tail = birth_number + b"%d" % ((10 - (day_sum + birth_sum) % 10) % 10)
            out += (long + tail, long_dash + tail, short + tail, short_dash + tail)
    return out


def _prefixes(algorithm: str, days: Iterable[date]) -> np.ndarray:
    """The digest prefixes of every candidate born on `days`, joined a day at a time: a whole year
    as one list of digests would hold about 150 MB of small bytes objects at once."""
    hash_ = getattr(hashlib, algorithm)
    return np.concatenate([
        np.frombuffer(b"".join([hash_(c).digest()[:PREFIX_BYTES] for c in candidates_of_day(day)]), dtype=np.uint64)
        for day in days])


def _days_of(year: int) -> list[date]:
    """The days of `year` in an order that spreads any leading part over the whole year (a stride
    coprime with the year's length), so that a part of the year is not one season."""
    n = 366 if calendar.isleap(year) else 365
    first = date(year, 1, 1)
    return [first + timedelta(days=(i * 149) % n) for i in range(n)]


def _whole_year(algorithm: str, year: int) -> np.ndarray:
    key = (algorithm, year)
    if key in _whole_years:
        _whole_years.move_to_end(key)
        return _whole_years[key]
    table = np.sort(_prefixes(algorithm, _days_of(year)))
    _whole_years[key] = table
    while len(_whole_years) > CACHED_YEARS:
        _whole_years.popitem(last=False)
    return table


def days_needed(pseudonyms: int, days_in_year: int) -> int:
    """Days to hash so that missing all of `pseudonyms` unkeyed hashes of one year (each born on a
    day the others need not share) is less likely than MISS_PROBABILITY."""
    if pseudonyms <= 0:
        return 0
    share = 1 - math.exp(math.log(MISS_PROBABILITY) / pseudonyms)
    return min(days_in_year, max(MIN_DAYS, math.ceil(share * days_in_year)))


def _in_table(sample: np.ndarray, table: np.ndarray) -> bool:
    at = np.searchsorted(table, sample).clip(max=len(table) - 1)
    return bool((table[at] == sample).any())


def _parse(rows: Iterable[tuple[str | None, str | None]]) -> dict[str, dict[int, list[bytes]]]:
    """The sampled pseudonyms that could be a hash, by algorithm and birth year, as digest prefixes."""
    by_algorithm: dict[str, dict[int, list[bytes]]] = {}
    for birth_year, pseudonym in rows:
        if not pseudonym or not birth_year:
            continue
        pseudonym = pseudonym.strip()
        algorithm = ALGORITHMS.get(len(pseudonym))
        year = birth_year.strip()
        if algorithm is None or not (year.isascii() and year.isdigit() and 1900 <= int(year) <= 2099):
            continue
        try:
            prefix = bytes.fromhex(pseudonym)[:PREFIX_BYTES]
        except ValueError:
            continue
        by_algorithm.setdefault(algorithm, {}).setdefault(int(year), []).append(prefix)
    return by_algorithm


def any_reversible(rows: Iterable[tuple[str | None, str | None]]) -> bool:
    """True when a (birth year, pseudonym) pair of the sample is an unkeyed hash of an identity
    number born in that year, as far as the enumeration described in the module text finds."""
    for algorithm, by_year in _parse(rows).items():
        samples = {year: np.frombuffer(b"".join(p), dtype=np.uint64) for year, p in by_year.items()}
        cached = [year for year in samples if (algorithm, year) in _whole_years]
        if cached:
            # A whole year: every pseudonym of that year is tested against every candidate.
            if any(_in_table(samples[year], _whole_year(algorithm, year)) for year in cached):
                return True
            continue
        year = max(samples, key=lambda y: (len(samples[y]), y))
        days = _days_of(year)
        needed = days_needed(len(samples[year]), len(days))
        if needed >= WHOLE_YEAR_FROM_DAYS:
            table = _whole_year(algorithm, year)
        else:
            table = np.sort(_prefixes(algorithm, days[:needed]))
        if _in_table(samples[year], table):
            return True
    return False


def sample(conn, table: sql.Identifier, rows: int) -> list[tuple[str | None, str | None]]:
    """(birth_year, person_pseudonym) as text from the pending batch: every row of a small batch,
    a repeatable block sample of about SAMPLE_ROWS rows of a large one."""
    percent = min(100.0, 100.0 * SAMPLE_ROWS / max(rows, 1))
    sampling = sql.SQL("") if percent >= 100 else sql.SQL(" tablesample system ({}) repeatable (0)").format(
        sql.Literal(percent))
    return conn.execute(sql.SQL("select birth_year::text, person_pseudonym::text from {}{}").format(
        table, sampling)).fetchall()


def check_pending(conn, table: sql.Identifier, rows: int) -> None:
    """Raise Rejection(`reversible_pseudonym`) when the pending batch's pseudonyms are unkeyed hashes
    of identity numbers. Neither a pseudonym nor a number leaves this function."""
    if any_reversible(sample(conn, table, rows)):
        raise Rejection("reversible_pseudonym", REASON)


def reversible_published(conn) -> list[dict]:
    """The published batches whose pseudonyms are unkeyed hashes: published before the gate checked
    for them. Named by batch, source and period only. The remedy is the contract's: the source
    delivers the week again, pseudonymised with the key, and that correction supersedes the batch."""
    from ewi.sources import SOURCES

    found = []
    batches = conn.execute("select batch_id, source, period from audit.batches where status = 'published' "
                           "order by source, period").fetchall()
    for batch_id, source_name, period in batches:
        source = SOURCES[source_name]
        # A partitioned source is read from the period's partition only (the batch id is no key).
        week = sql.SQL(" and {} = {}").format(sql.Identifier(source.period_column), sql.Literal(period)) \
            if source.partitioned else sql.SQL("")
        rows = conn.execute(sql.SQL("select birth_year::text, person_pseudonym::text from {} "
                                    "where batch_id = %s{} limit %s").format(
            sql.Identifier("raw", source.name), week), (batch_id, SAMPLE_ROWS)).fetchall()
        if any_reversible(rows):
            found.append({"batch_id": batch_id, "source": source_name, "period": period})
    conn.rollback()  # only read
    return found
