"""Reversible pseudonyms: `ewi synth` extracts whose pseudonyms were replaced by unkeyed hashes of
synthetic identity numbers go through the real `ewi ingest` and are rejected as
`reversible_pseudonym`, leaving nothing in pending, quarantine or raw tables and no number or
pseudonym in any output; the untouched extracts still publish.

The identity numbers are drawn here, for the birth year of each row, with check digits from this
file's own Luhn sum (checked against the tax agency's published example 121212-1212)."""

from __future__ import annotations

import codecs
import csv
import hashlib
import hmac
import io
import json
import logging
import os
import random
from datetime import date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from ewi.cli import EXIT_GATE, EXIT_OK, main
from ewi.ingest import pseudonyms

WEEKS = ("2025-W09", "2025-W10")  # the first for the altered files, the second stays as delivered
FORMS = {
    "12": "{century}{yymmdd}{serial}",
    "12-": "{century}{yymmdd}-{serial}",
    "10": "{yymmdd}{serial}",
    "10-": "{yymmdd}-{serial}",
}


def luhn_check_digit(nine: str) -> str:
    total = 0
    for i, ch in enumerate(nine):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def test_luhn_check_digit_of_this_file_agrees_with_the_tax_agency_example():
    assert luhn_check_digit("121212121") == "2"  # 121212-1212, Skatteverket's published example


def identity_number(birth_year: int, rng: random.Random, samordning: bool) -> tuple[str, str]:
    """(century, the 10 digits) of a synthetic identity number born in `birth_year`."""
    day = date(birth_year, 1, 1) + timedelta(days=rng.randrange(365))
    yymmdd = f"{birth_year % 100:02d}{day.month:02d}{day.day + (60 if samordning else 0):02d}"
    nine = yymmdd + f"{rng.randrange(1000):03d}"
    return f"{birth_year // 100}", nine + luhn_check_digit(nine)


def written_as(century: str, ten: str, form: str) -> str:
    return FORMS[form].format(century=century, yymmdd=ten[:6], serial=ten[6:])


@pytest.fixture(scope="module")
def warehouse_db(ewi_home):
    os.environ["EWI_WAREHOUSE_DB"] = "ewi_pseudonym_tests"
    try:
        yield
    finally:
        os.environ.pop("EWI_WAREHOUSE_DB", None)


@pytest.fixture(scope="module")
def delivered(warehouse_db, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """One `ewi synth` run of two weeks: {(source, week): file}."""
    out = tmp_path_factory.mktemp("synth")
    assert main(["synth", "--out", str(out), "--weeks", "2", "--end-week", WEEKS[-1], "--seed", "13"]) == EXIT_OK
    files = {}
    for path in out.glob("*.csv"):
        source, week = path.name.rsplit("_", 2)[0], path.name.rsplit("_", 2)[1]
        files[(source, week)] = path
    return files


@pytest.fixture(scope="module")
def conn(warehouse_db):
    from ewi import warehouse, warehouse_init

    warehouse_init.init_warehouse()
    with psycopg.connect(warehouse.dsn(), autocommit=True) as c:
        yield c


def _dialect(data: bytes) -> tuple[str, str, str]:
    encoding = "utf-8-sig" if data.startswith(codecs.BOM_UTF8) else "utf-8"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        encoding, text = "cp1252", data.decode("cp1252")
    header = text.split("\n", 1)[0]
    return encoding, (";" if ";" in header else ","), ("\r\n" if header.endswith("\r") else "\n")


def with_unkeyed_pseudonyms(original: Path, out_dir: Path, algorithm: str, form: str, samordning: bool = False,
                            every: int = 1, upper: bool = False,
                            first_area: str | None = None) -> tuple[Path, set[str]]:
    """A copy of a delivered file, same dialect and name, in which the pseudonym of every `every`-th
    person is the unkeyed hash of an identity number born in the row's birth year. Returns the file
    and every string that must not leave the ingest: the numbers (10 digits and as written) and the
    pseudonyms. `first_area`: the first row's home area instead of its own."""
    data = original.read_bytes()
    encoding, delimiter, line_end = _dialect(data)
    reader = csv.DictReader(io.StringIO(data.decode(encoding), newline=""), delimiter=delimiter)
    rng = random.Random(f"{original.name} {algorithm} {form} {samordning}")
    numbers: dict[str, tuple[str, str]] = {}
    used: set[str] = set()
    secrets: set[str] = set()
    rows = []
    for i, row in enumerate(reader):
        person = row["person_pseudonym"]
        if person not in numbers and i % every == 0:
            while (n := identity_number(int(row["birth_year"]), rng, samordning))[1] in used:
                pass
            used.add(n[1])
            numbers[person] = n
        if person in numbers:
            century, ten = numbers[person]
            written = written_as(century, ten, form)
            digest = hashlib.new(algorithm, written.encode()).hexdigest()
            row["person_pseudonym"] = digest.upper() if upper else digest
            secrets |= {ten, written, digest}
        rows.append(row)
    if first_area:
        rows[0]["home_area_code"] = first_area
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=reader.fieldnames, delimiter=delimiter, lineterminator=line_end)
    writer.writeheader()
    writer.writerows(rows)
    body = buf.getvalue().encode(encoding)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / original.name
    path.write_bytes(body)
    manifest = original.with_name(original.name + ".manifest.json")
    if manifest.exists():  # the sidecar follows the file, as the source system would write it
        sidecar = json.loads(manifest.read_text())
        sidecar["sha256"] = hashlib.sha256(body).hexdigest()
        path.with_name(path.name + ".manifest.json").write_text(json.dumps(sidecar))
    return path, secrets


def ewi_ingest(capsys, path: Path) -> tuple[int, dict, str]:
    code = main(["ingest", str(path), "--json"])
    captured = capsys.readouterr()
    [line] = [json.loads(x) for x in captured.out.splitlines() if x.startswith("{")]
    return code, line, captured.out + captured.err


def left_in_tables(conn, source: str, batch_id: str, audited: bool = False) -> int:
    """Tables and rows the batch left (and, unless it was `audited` before, check results)."""
    left = conn.execute(
        "select count(*) from information_schema.tables where table_schema in ('pending', 'raw') "
        "and table_name like %s", (f"%{batch_id}",)).fetchone()[0]
    for table in (f"quarantine.{source}", f"raw.{source}", f"pending.{source}_legacy"):
        left += conn.execute(f"select count(*) from {table} where batch_id = %s",  # noqa: S608
                             (batch_id,)).fetchone()[0]
    return left + (0 if audited else conn.execute("select count(*) from audit.check_results where batch_id = %s",
                                                  (batch_id,)).fetchone()[0])


def recorded_text(conn) -> str:
    return conn.execute(
        "select coalesce((select string_agg(b::text, '|') from audit.batches b), '') || "
        "coalesce((select string_agg(c::text, '|') from audit.check_results c), '')").fetchone()[0]


CASES = [
    ("referrals", "sha256", "12", False, 1, False),
    ("referrals", "sha256", "12-", False, 1, False),
    ("contacts", "sha256", "10", False, 1, False),
    ("school_absence", "sha256", "10-", False, 1, False),
    ("contacts", "sha256", "12-", True, 1, False),  # samordningsnummer
    ("school_absence", "sha256", "12", False, 3, False),  # a third of the pupils only
    ("referrals", "sha256", "10", False, 1, True),  # upper-case hex
    ("referrals", "sha1", "12", False, 1, False),
    ("contacts", "md5", "10-", False, 1, False),
]


@pytest.mark.parametrize(("source", "algorithm", "form", "samordning", "every", "upper"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}{'-samordning' if c[3] else ''}"
                              f"{f'-1in{c[4]}' if c[4] > 1 else ''}{'-upper' if c[5] else ''}" for c in CASES])
def test_unkeyed_hashes_of_identity_numbers_are_rejected_and_leave_nothing(
        conn, delivered, tmp_path, capsys, caplog, source, algorithm, form, samordning, every, upper):
    # Each file is checked as a fresh worker process would check it, with no birth year kept.
    pseudonyms._whole_years.clear()
    path, secrets = with_unkeyed_pseudonyms(delivered[(source, WEEKS[0])], tmp_path / "landing", algorithm,
                                            form, samordning, every, upper)
    with caplog.at_level(logging.DEBUG):
        code, result, output = ewi_ingest(capsys, path)
    assert code == EXIT_GATE
    assert result["status"] == "rejected"
    assert result["reason"].split(":")[0] == "reversible_pseudonym"
    status, reason = conn.execute("select status, reason from audit.batches where batch_id = %s",
                                  (result["batch_id"],)).fetchone()
    assert status == "rejected" and reason == result["reason"]
    assert left_in_tables(conn, source, result["batch_id"]) == 0
    recorded = recorded_text(conn)
    for text in (output, caplog.text, recorded):
        assert not any(s in text or s.upper() in text for s in secrets)


def test_a_second_file_is_checked_against_the_birth_year_kept_from_the_first(conn, delivered, tmp_path, capsys):
    pseudonyms._whole_years.clear()
    for source, form in (("referrals", "10"), ("school_absence", "12-")):  # files no other test sends
        path, _ = with_unkeyed_pseudonyms(delivered[(source, WEEKS[0])], tmp_path / source, "sha256", form)
        code, result, _ = ewi_ingest(capsys, path)
        assert (code, result["status"], result["reason"].split(":")[0]) == \
            (EXIT_GATE, "rejected", "reversible_pseudonym")


def test_a_batch_quarantined_before_the_check_existed_is_rejected_when_released(conn, delivered, tmp_path,
                                                                               capsys, monkeypatch):
    area = "2081C9981"  # not in the register: the file is quarantined, as a version without the check did
    path, secrets = with_unkeyed_pseudonyms(delivered[("contacts", WEEKS[0])], tmp_path / "landing", "sha256", "12",
                                            first_area=area)
    with monkeypatch.context() as older:
        older.setattr(pseudonyms, "check_pending", lambda *args, **kwargs: None)
        code, held, _ = ewi_ingest(capsys, path)
    assert held["status"] == "quarantined"

    conn.execute("insert into ref.areas values (%s, 'Ny stadsdel', 'C', 100, 5, 5, 5, 5, 5)", (area,))
    try:
        code = main(["quarantine", "release", held["batch_id"], "--reason", "area added", "--json"])
        captured = capsys.readouterr()
        [released] = [json.loads(x) for x in captured.out.splitlines() if x.startswith("{")]
        assert code == EXIT_GATE and released["status"] == "rejected"
        assert released["reason"].split(":")[0] == "reversible_pseudonym"
        assert left_in_tables(conn, "contacts", held["batch_id"], audited=True) == 0
        assert not any(s in captured.out + captured.err + recorded_text(conn) for s in secrets)
    finally:
        conn.execute("delete from raw.contacts where home_area_code = %s", (area,))
        conn.execute("delete from ref.areas where area_code = %s", (area,))


def as_correction(original: Path, out_dir: Path) -> Path:
    """The delivered file again, delivered an hour later: the contract's correction of its week."""
    source, period, delivered = original.stem.rsplit("_", 2)
    later = datetime.strptime(delivered, "%Y%m%dT%H%M") + timedelta(hours=1)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{source}_{period}_{later:%Y%m%dT%H%M}.csv"
    path.write_bytes(original.read_bytes())
    manifest = original.with_name(original.name + ".manifest.json")
    if manifest.exists():
        path.with_name(path.name + ".manifest.json").write_bytes(manifest.read_bytes())
    return path


def listed_reversible(capsys) -> tuple[int, list[dict], str]:
    code = main(["reversible-pseudonyms", "--json"])
    captured = capsys.readouterr()
    return code, [json.loads(x) for x in captured.out.splitlines() if x.startswith("{")], captured.out + captured.err


def test_batches_published_before_the_check_existed_are_listed_until_a_correction_replaces_them(
        conn, delivered, tmp_path, capsys, monkeypatch):
    code, listed, _ = listed_reversible(capsys)
    assert (code, listed) == (EXIT_OK, [])
    published, secrets = [], set()
    for source, form in (("contacts", "10-"), ("school_absence", "10")):  # files no other test sends
        path, numbers = with_unkeyed_pseudonyms(delivered[(source, WEEKS[0])], tmp_path / "landing", "sha256", form)
        secrets |= numbers
        with monkeypatch.context() as older:  # as a version without the check published them
            older.setattr(pseudonyms, "check_pending", lambda *args, **kwargs: None)
            _, result, _ = ewi_ingest(capsys, path)
        assert result["status"] == "published"
        published.append({"batch_id": result["batch_id"], "source": source, "period": WEEKS[0]})

    code, listed, output = listed_reversible(capsys)
    assert code == EXIT_GATE
    assert sorted(listed, key=lambda b: b["source"]) == published
    assert not any(s in output or s.upper() in output for s in secrets)

    for source in ("contacts", "school_absence"):
        code, result, _ = ewi_ingest(capsys, as_correction(delivered[(source, WEEKS[0])], tmp_path / "corrections"))
        assert (code, result["status"]) == (EXIT_OK, "published")
    code, listed, _ = listed_reversible(capsys)
    assert (code, listed) == (EXIT_OK, [])
    for batch in published:
        assert left_in_tables(conn, batch["source"], batch["batch_id"], audited=True) == 0


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("algorithm", ["sha256", "sha1", "md5"])
def test_the_tax_agency_example_number_is_found_in_every_form_and_hash(algorithm, form):
    written = written_as("20", "1212121212", form)
    assert pseudonyms.any_reversible([("2012", hashlib.new(algorithm, written.encode()).hexdigest())])
    keyed = hmac.digest(b"a secret only the pseudonymisation service holds", written.encode(), "sha256").hex()
    assert not pseudonyms.any_reversible([("2012", keyed)])


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("ten", [
    "8112189876",  # worked by hand: weights 2,1,2,1,2,1,2,1,2 give 7+1+2+2+2+8+9+8+5 = 44, check digit 6
    "8112789873",  # its samordningsnummer (day 18 + 60): 7+1+2+2+5+8+9+8+5 = 47, check digit 3
])
def test_hand_worked_numbers_are_found_in_every_form(ten, form):
    written = written_as("19", ten, form)
    assert pseudonyms.any_reversible([("1981", hashlib.sha256(written.encode()).hexdigest())])


def test_the_delivered_extracts_still_publish(conn, delivered, capsys):
    """Run last: the birth years kept by the tests above are in use, as in a long-running worker."""
    for source in ("school_absence", "referrals", "contacts"):
        code, result, _ = ewi_ingest(capsys, delivered[(source, WEEKS[1])])
        assert (code, result["status"]) == (EXIT_OK, "published"), result["reason"]
        assert conn.execute(f"select count(*) from raw.{source} where batch_id = %s",  # noqa: S608
                            (result["batch_id"],)).fetchone()[0] == result["rows"]
