"""Write-audit-publish ingest against a real PostgreSQL and real Great Expectations: every bad
input is a real file, and every test checks status, reason, and that published data is unchanged."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
from datetime import date, datetime, timedelta

import psycopg
import pytest

from ewi.ingest import ingest_files
from ewi.ingest.identifiers import contains_identity_number
from ewi.sources import SOURCES, iso_week_of
from tests import extracts

RAW_TABLES = ("raw.school_absence", "raw.referrals", "raw.contacts")
WAREHOUSE_DB = "ewi_ingest_tests"
_weeks = itertools.count()


def new_period() -> str:
    """A fresh ISO week per test, so tests do not see each other's batches."""
    return iso_week_of(date(2024, 1, 8) + timedelta(weeks=next(_weeks)))


@pytest.fixture(scope="module")
def conn(module_db):
    return module_db


def snapshot(conn) -> dict:
    out = {}
    for table in RAW_TABLES:
        out[table] = conn.execute(
            f"select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from {table} t"  # noqa: S608
        ).fetchone()
    return out


def ingest_one(path):
    [result] = ingest_files([path])
    return result


def batch(conn, batch_id) -> dict:
    cur = conn.execute("select * from audit.batches where batch_id = %s", (batch_id,))
    return dict(zip([d.name for d in cur.description], cur.fetchone(), strict=True))


def pending_tables(conn, batch_id) -> list[str]:
    """Pending tables or rows left for the batch (each batch is loaded into its own table)."""
    left = [r[0] for r in conn.execute(
        "select table_name from information_schema.tables where table_schema = 'pending' and table_name like %s",
        (f"%{batch_id.lower()}",)).fetchall()]
    for table in ("pending.school_absence", "pending.referrals", "pending.contacts"):
        if conn.execute(f"select count(*) from {table} where batch_id = %s", (batch_id,)).fetchone()[0]:  # noqa: S608
            left.append(table)
    return left


def assert_rejected(conn, path, code):
    before = snapshot(conn)
    result = ingest_one(path)
    assert result.status == "rejected", result
    assert result.reason.startswith(code + ":"), result.reason
    row = batch(conn, result.batch_id)
    assert row["status"] == "rejected" and row["reason"] == result.reason
    assert row["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert row["file_size"] == path.stat().st_size
    assert not pending_tables(conn, result.batch_id)
    assert snapshot(conn) == before
    return result


def assert_quarantined(conn, path, expectation_fragment):
    before = snapshot(conn)
    result = ingest_one(path)
    assert result.status == "quarantined", result
    assert expectation_fragment in result.reason, result.reason
    assert result.failed_checks
    row = batch(conn, result.batch_id)
    assert row["status"] == "quarantined"
    source = result.source
    held = conn.execute(f"select count(*) from quarantine.{source} where batch_id = %s",  # noqa: S608
                        (result.batch_id,)).fetchone()[0]
    assert held == result.rows
    assert not pending_tables(conn, result.batch_id)
    assert conn.execute("select count(*) from audit.check_results where batch_id = %s and not success",
                        (result.batch_id,)).fetchone()[0] >= 1
    assert snapshot(conn) == before
    return result


def assert_row_quarantined(conn, tmp_path, source, index, expectation_fragment, **cells):
    """A fresh week of `source` whose row `index` holds `cells` is quarantined, its reason naming
    `expectation_fragment`. Returns the result and the row as delivered."""
    period = new_period()
    rows = extracts.rows_for(source, period)
    rows[index].update(cells)
    return assert_quarantined(conn, extracts.write(tmp_path, source, period, rows=rows),
                              expectation_fragment), rows[index]


# --- happy paths -------------------------------------------------------------------------------

@pytest.mark.parametrize("source", sorted(SOURCES))
def test_valid_file_is_published_with_its_row_count(conn, tmp_path, source):
    period = new_period()
    path = extracts.write(tmp_path, source, period)
    result = ingest_one(path)
    assert result.status == "published", result
    assert result.rows == 40
    assert conn.execute(f"select count(*) from raw.{source} where batch_id = %s",  # noqa: S608
                        (result.batch_id,)).fetchone()[0] == 40
    assert result.data_docs and os.path.exists(result.data_docs)
    checks = conn.execute("select count(*), bool_and(success) from audit.check_results where batch_id = %s",
                          (result.batch_id,)).fetchone()
    assert checks[0] >= 10 and checks[1] is True


def test_both_dialects_and_bom_are_accepted(conn, tmp_path):
    cols = list(reversed(SOURCES["contacts"].column_names))  # column order may vary
    a = extracts.write(tmp_path, "contacts", new_period(), columns=cols, delimiter=";", encoding="cp1252")
    b = extracts.write(tmp_path, "contacts", new_period(), bom=True)
    assert [r.status for r in ingest_files([a, b])] == ["published", "published"]


def test_same_file_twice_is_a_duplicate_and_changes_nothing(conn, tmp_path):
    path = extracts.write(tmp_path, "referrals", new_period())
    first = ingest_one(path)
    assert first.status == "published"
    before = snapshot(conn)
    second = ingest_one(path)
    assert second.status == "duplicate"
    assert first.batch_id in second.reason
    assert snapshot(conn) == before
    assert batch(conn, second.batch_id)["duplicate_of"] == first.batch_id


def test_correction_replaces_the_earlier_week(conn, tmp_path):
    period = new_period()
    first = ingest_one(extracts.write(tmp_path / "a", "school_absence", period))
    corrected_rows = extracts.rows_for("school_absence", period, n=42)
    later = datetime.combine(date.today(), datetime.min.time())
    second = ingest_one(extracts.write(tmp_path / "b", "school_absence", period, rows=corrected_rows, delivered=later))
    assert (first.status, second.status) == ("published", "published")
    assert conn.execute("select count(*) from raw.school_absence where iso_week = %s", (period,)).fetchone()[0] == 42
    old = batch(conn, first.batch_id)
    assert old["status"] == "superseded" and old["superseded_by"] == second.batch_id


def test_a_published_week_is_its_own_partition_holding_one_batch_of_one_week(conn, tmp_path):
    """What keeps the school-absence key unique without an index: the gate passed the batch's key as
    unique, and its partition holds that batch alone (batch_id is the partition's constant) and only
    its own ISO week (a CHECK that came with the load, so attaching scanned nothing)."""
    period = new_period()
    result = ingest_one(extracts.write(tmp_path, "school_absence", period))
    assert result.status == "published"
    partition = conn.execute(
        "select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid "
        "where i.inhparent = 'raw.school_absence'::regclass and pg_get_expr(c.relpartbound, c.oid) like %s",
        (f"%'{period}'%",)).fetchone()[0]
    assert partition == f"school_absence_{result.batch_id}"
    assert conn.execute("select to_regclass(%s)", (f"pending.school_absence_{result.batch_id}",)).fetchone()[0] is None
    assert conn.execute("select array_agg(distinct batch_id), count(*) from raw.school_absence where iso_week = %s",
                        (period,)).fetchone() == ([result.batch_id], result.rows)
    assert conn.execute("select count(*) from pg_constraint where conrelid = %s::regclass and contype = 'c'",
                        (f"raw.{partition}",)).fetchone()[0] == 1
    assert conn.execute("select count(*) from pg_indexes where schemaname = 'raw' and tablename = %s",
                        (partition,)).fetchone()[0] == 0
    other_week = iso_week_of(date.fromisocalendar(int(period[:4]), int(period[-2:]), 1) + timedelta(weeks=1))
    with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():
        conn.execute(f"insert into raw.{partition} select * from raw.{partition} limit 1")  # noqa: S608
        conn.execute(f"update raw.{partition} set iso_week = %s", (other_week,))  # noqa: S608


def test_a_school_week_is_audited_in_two_lanes_joined_into_one_validation_result(conn, tmp_path, ewi_home):
    """The key rule runs on a GX context of its own beside the other rules; the auditor still gets
    one stored result and one Data Docs page holding every expectation of the suite, in its order."""
    from ewi import expectations

    result = ingest_one(extracts.write(tmp_path, "school_absence", new_period()))
    assert result.status == "published"
    suite = expectations.load_suite(SOURCES["school_absence"])
    stored = [json.loads(p.read_text()) for p in (ewi_home / "gx" / "validation_results").rglob("*.json")
              if result.batch_id in p.read_text()]
    assert len(stored) == 1
    [validation] = stored
    assert [r["expectation_config"]["type"] for r in validation["results"]] == [e["type"] for e in suite["expectations"]]
    assert validation["success"] and validation["statistics"]["evaluated_expectations"] == len(suite["expectations"])
    assert validation["meta"]["lanes"] == {"content": len(suite["expectations"]) - 1, "key": 1}
    assert conn.execute("select count(*) from audit.check_results where batch_id = %s",
                        (result.batch_id,)).fetchone()[0] == len(suite["expectations"])
    page = open(result.data_docs, encoding="utf-8").read()
    assert "duplicated (person_pseudonym" in page and "absence above scheduled minutes" in page


def test_two_files_for_one_period_in_one_call_the_later_delivery_wins(conn, tmp_path):
    period = new_period()
    early = extracts.write(tmp_path / "a", "contacts", period, delivered=datetime(2030, 1, 1, 6, 0))
    late = extracts.write(tmp_path / "b", "contacts", period, rows=extracts.rows_for("contacts", period, n=41),
                          delivered=datetime(2030, 1, 1, 7, 0))
    late_result, early_result = ingest_files([late, early])  # passed out of order on purpose
    assert (late_result.status, early_result.status) == ("published", "published")
    assert batch(conn, early_result.batch_id)["status"] == "superseded"
    assert batch(conn, early_result.batch_id)["superseded_by"] == late_result.batch_id
    assert conn.execute("select count(*) from raw.contacts where batch_id = %s",
                        (late_result.batch_id,)).fetchone()[0] == 41


def test_an_older_delivery_arriving_after_a_correction_is_rejected_as_stale(conn, tmp_path):
    period = new_period()
    late = extracts.write(tmp_path / "a", "contacts", period, delivered=datetime(2030, 1, 2, 6, 0))
    early = extracts.write(tmp_path / "b", "contacts", period, rows=extracts.rows_for("contacts", period, n=39),
                           delivered=datetime(2030, 1, 1, 6, 0))
    assert ingest_one(late).status == "published"
    assert_rejected(conn, early, "stale")


# --- rejected: not readable as the contract ----------------------------------------------------

def test_empty_file(conn, tmp_path):
    assert_rejected(conn, extracts.write(tmp_path, "contacts", new_period(), content=b""), "empty")


def test_wrong_delimiter(conn, tmp_path):
    assert_rejected(conn, extracts.write(tmp_path, "contacts", new_period(), delimiter="\t"), "dialect")


def test_utf8_with_semicolons_is_not_a_contract_dialect(conn, tmp_path):
    rows = extracts.rows_for("contacts", new_period())
    path = extracts.write(tmp_path, "contacts", new_period(), rows=rows, delimiter=";", bom=True)
    assert_rejected(conn, path, "dialect")


def test_windows_1252_file_declared_nowhere(conn, tmp_path):
    # Windows-1252 bytes (ä = 0xe4) in a comma-separated file: neither contract dialect.
    period = new_period()
    rows = extracts.rows_for("referrals", period)
    rows[0]["concern_category"] = "oro för hälsa"
    path = extracts.write(tmp_path, "referrals", period, rows=rows, encoding="cp1252")
    assert_rejected(conn, path, "encoding")


def test_binary_garbage(conn, tmp_path):
    garbage = bytes((i * 97 + 13) % 256 for i in range(4096))
    assert_rejected(conn, extracts.write(tmp_path, "referrals", new_period(), content=garbage), "encoding")


def test_truncated_last_line(conn, tmp_path):
    period = new_period()
    data = extracts.render(extracts.rows_for("school_absence", period), list(SOURCES["school_absence"].column_names))
    path = extracts.write(tmp_path, "school_absence", period, content=data[:-40])
    assert_rejected(conn, path, "truncated")


def test_manifest_row_count_mismatch(conn, tmp_path):
    period = new_period()
    path = extracts.write(tmp_path, "school_absence", period)
    extracts.write_manifest(path, "school_absence", period, 41, hashlib.sha256(path.read_bytes()).hexdigest())
    assert_rejected(conn, path, "truncated")


def test_manifest_checksum_mismatch(conn, tmp_path):
    period = new_period()
    path = extracts.write(tmp_path, "school_absence", period)
    extracts.write_manifest(path, "school_absence", period, 40, "0" * 64)
    assert_rejected(conn, path, "checksum")


def test_matching_manifest_is_published(conn, tmp_path):
    path = extracts.write(tmp_path, "school_absence", new_period(), manifest=True)
    assert ingest_one(path).status == "published"


def test_missing_column(conn, tmp_path):
    cols = [c for c in SOURCES["contacts"].column_names if c != "agency"]
    result = assert_rejected(conn, extracts.write(tmp_path, "contacts", new_period(), columns=cols), "missing_columns")
    assert "agency" in result.reason


def test_extra_column(conn, tmp_path):
    cols = [*SOURCES["contacts"].column_names, "comment"]
    result = assert_rejected(conn, extracts.write(tmp_path, "contacts", new_period(), columns=cols),
                             "unexpected_columns")
    assert "comment" not in result.reason and "position(s) 8" in result.reason


def test_renamed_column(conn, tmp_path):
    period = new_period()
    rows = [{**r, "area": r["home_area_code"]} for r in extracts.rows_for("contacts", period)]
    cols = ["area" if c == "home_area_code" else c for c in SOURCES["contacts"].column_names]
    result = assert_rejected(conn, extracts.write(tmp_path, "contacts", period, rows=rows, columns=cols),
                             "missing_columns")
    assert "home_area_code" in result.reason and "position(s) 4" in result.reason
    assert "area," not in result.reason and not result.reason.endswith("area")


@pytest.mark.parametrize("column", ["personnummer", "namn", "name", "elev_namn", "Förnamn"])
def test_column_named_like_an_identifier(conn, tmp_path, column):
    cols = [*SOURCES["referrals"].column_names, column]
    assert_rejected(conn, extracts.write(tmp_path, "referrals", new_period(), columns=cols), "direct_identifier")


def test_file_name_injection_attempt(conn, tmp_path):
    name = "referrals_2025-W01_'; drop table audit.batches; --.csv"
    path = extracts.write(tmp_path, "referrals", new_period(), name=name)
    result = assert_rejected(conn, path, "file_name")
    assert batch(conn, result.batch_id)["file_name"] == name
    assert conn.execute("select count(*) from audit.batches").fetchone()[0] > 0


def test_file_name_of_unknown_source(conn, tmp_path):
    path = extracts.write(tmp_path, "referrals", new_period(), name="pupils_2025-W01_20250106T0600.csv")
    assert_rejected(conn, path, "file_name")


# Check digits worked out by hand, not with the module under test (weights 2, 1, 2, … from the left;
# a product above 9 counts as the sum of its digits; the check digit makes the total a multiple of 10):
# 8 1 1 2 1 8 9 8 7 -> 7 1 2 2 2 8 9 8 5 = 44 -> 6;  8 1 1 2 7 8 9 8 7 -> 7 1 2 2 5 8 9 8 5 = 47 -> 3
PNR10 = "8112189876"  # 18 December 1981
SAMORDNING = "8112789873"  # day 78 = 18 + 60


@pytest.mark.parametrize(("column", "value"), [
    ("person_pseudonym", PNR10),
    ("person_pseudonym", f"{PNR10[:6]}-{PNR10[6:]}"),
    ("referral_id", f"19{PNR10}"),
    ("referral_id", f"19{PNR10[:6]}-{PNR10[6:]}"),
    ("concern_category", f"{PNR10[:6]}+{PNR10[6:]}"),
    ("concern_category", f"samtal med elev {PNR10[:6]}-{PNR10[6:]} om frånvaro"),
    ("reporter_category", SAMORDNING),
])
def test_personal_identity_number_anywhere_rejects_the_file_and_leaves_no_trace(conn, tmp_path, caplog,
                                                                              column, value):
    period = new_period()
    rows = extracts.rows_for("referrals", period)
    rows[17][column] = value
    path = extracts.write(tmp_path, "referrals", period, rows=rows)
    with caplog.at_level(logging.DEBUG):
        result = assert_rejected(conn, path, "direct_identifier")
    digits = value.replace("-", "").replace("+", "")[-10:]
    assert digits not in json.dumps(result.as_dict())
    assert digits not in caplog.text
    dump = conn.execute(
        "select coalesce((select string_agg(b::text, '|') from audit.batches b), '') || "
        "coalesce((select string_agg(c::text, '|') from audit.check_results c), '')"
    ).fetchone()[0]
    assert digits not in dump
    for table in ("pending.referrals", "quarantine.referrals", "raw.referrals"):
        assert conn.execute(f"select count(*) from {table} t where t::text like %s",  # noqa: S608
                            (f"%{digits[-6:]}%",)).fetchone()[0] == 0


def test_identity_number_detector_ignores_pseudonyms_and_codes():
    for i in range(2000):
        assert not contains_identity_number(extracts.pseudonym(i))
    assert not contains_identity_number("school_absence_2026-W47_20261123T0612.csv,12345678,2081C1010,2012")
    assert contains_identity_number(f"x,{PNR10},y")
    assert not contains_identity_number(f"x,{PNR10[:-1]}{(int(PNR10[-1]) + 1) % 10},y")  # Luhn fails


# --- quarantined: readable, but fails the gate -------------------------------------------------

def test_header_only(conn, tmp_path):
    path = extracts.write(tmp_path, "contacts", new_period(), rows=[])
    assert_quarantined(conn, path, "Volume")


def test_duplicate_rows(conn, tmp_path, ewi_home):
    period = new_period()
    rows = extracts.rows_for("school_absence", period)
    rows[5] = dict(rows[4])
    assert_quarantined(conn, extracts.write(tmp_path, "school_absence", period, rows=rows), "is unique")
    # A failed unique index or constraint would have logged the duplicated key, pseudonym included.
    server_log = ewi_home / "warehouse" / "log"
    if server_log.exists():
        assert rows[4]["person_pseudonym"] not in server_log.read_text(errors="replace")


def test_key_already_published_in_another_batch(conn, tmp_path):
    first_period, second_period = new_period(), new_period()
    assert ingest_one(extracts.write(tmp_path / "a", "referrals", first_period)).status == "published"
    rows = extracts.rows_for("referrals", second_period)
    rows[3]["referral_id"] = f"R{first_period}-3"
    assert_quarantined(conn, extracts.write(tmp_path / "b", "referrals", second_period, rows=rows),
                       "already published")


def test_unknown_area_code(conn, tmp_path):
    assert_row_quarantined(conn, tmp_path, "contacts", 0, "area register", home_area_code="2081C9990")


def test_dates_outside_the_period(conn, tmp_path):
    assert_row_quarantined(conn, tmp_path, "referrals", 2, "inside the delivery's ISO week", received_date="2019-01-01")


def test_iso_week_other_than_the_file_period(conn, tmp_path, ewi_home):
    _, row = assert_row_quarantined(conn, tmp_path, "school_absence", 2, "inside the delivery's ISO week",
                                    iso_week="2019-W01")
    # The typed load's period check refused the row, quoting it whole: not in the server's log.
    server_log = ewi_home / "warehouse" / "log"
    if server_log.exists():
        assert row["person_pseudonym"] not in server_log.read_text(errors="replace")


def test_negative_minutes(conn, tmp_path):
    assert_row_quarantined(conn, tmp_path, "school_absence", 1, "valid_absence_minutes between 0",
                           valid_absence_minutes="-30")


def test_absence_above_scheduled(conn, tmp_path):
    assert_row_quarantined(conn, tmp_path, "school_absence", 1, "never exceeds scheduled",
                           scheduled_minutes="600", valid_absence_minutes="400", invalid_absence_minutes="300")


def test_scheduled_minutes_above_3000(conn, tmp_path):
    assert_row_quarantined(conn, tmp_path, "school_absence", 1, "scheduled_minutes between 0 and 3000",
                           scheduled_minutes="3001")


def test_birth_year_out_of_range(conn, tmp_path):
    period = new_period()
    rows = extracts.rows_for("contacts", period)
    rows[1]["birth_year"] = str(int(period[:4]) - 25)
    assert_quarantined(conn, extracts.write(tmp_path, "contacts", period, rows=rows), "Age in the period year")


def test_not_an_integer(conn, tmp_path, ewi_home):
    result, _ = assert_row_quarantined(conn, tmp_path, "school_absence", 1,
                                       "checks failed: scheduled_minutes is an integer", scheduled_minutes="15OO")
    # The database server's log does not hold the value either (the embedded server logs to a file).
    server_log = ewi_home / "warehouse" / "log"
    if server_log.exists():
        assert "15OO" not in server_log.read_text(errors="replace")
    # Only the column that does not parse fails its type check; the quarantine keeps the text.
    assert "birth_year is an integer" not in result.reason
    assert conn.execute("select count(*) from quarantine.school_absence where batch_id = %s and "
                        "scheduled_minutes = '15OO'", (result.batch_id,)).fetchone()[0] == 1


@pytest.mark.parametrize("bad", ["abc123", "A" * 64, "a" * 63, "g" * 64])
def test_pseudonym_of_wrong_shape(conn, tmp_path, bad):
    assert_row_quarantined(conn, tmp_path, "contacts", 9, "person_pseudonym", person_pseudonym=bad)


def test_value_outside_the_allowed_list(conn, tmp_path):
    assert_row_quarantined(conn, tmp_path, "contacts", 9, "agency", agency="army")


def test_missing_key_value(conn, tmp_path):
    assert_row_quarantined(conn, tmp_path, "contacts", 9, "contact_id is required", contact_id="")


def test_missing_value_in_a_school_week(conn, tmp_path, ewi_home):
    """A school week is loaded NOT NULL; a missing value sends it to a text load, and the audit names
    the column. PostgreSQL's refusal quotes the whole row, pseudonym included: not in its log."""
    result, row = assert_row_quarantined(conn, tmp_path, "school_absence", 3, "school_unit_code is required",
                                         school_unit_code="")
    assert [c["column"] for c in result.failed_checks] == ["school_unit_code"]
    server_log = ewi_home / "warehouse" / "log"
    if server_log.exists():
        assert row["person_pseudonym"] not in server_log.read_text(errors="replace")


def test_volume_drop(conn, tmp_path):
    for _ in range(2):
        assert ingest_one(extracts.write(tmp_path, "contacts", new_period(), rows=None)).status == "published"
    period = new_period()
    result = assert_quarantined(conn, extracts.write(tmp_path, "contacts", period,
                                                     rows=extracts.rows_for("contacts", period, n=5)), "Volume")
    assert "5 rows" in result.reason


def test_a_low_school_holiday_week_is_published_and_a_low_term_week_still_quarantined(conn, tmp_path):
    """The Christmas break (2031-W52 and 2032-W01, jullov in Borlänge's school year) brings fewer
    referrals: 15 of the usual 40 is expected there. The same 15 in a term week (2032-W03) is below
    half the median (20) and held; 5 in a holiday week is below a quarter of it (10) and held too."""
    for period in ("2031-W48", "2031-W49", "2031-W50"):
        assert ingest_one(extracts.write(tmp_path, "referrals", period)).status == "published"
    for period in ("2031-W52", "2032-W01"):
        result = ingest_one(extracts.write(tmp_path, "referrals", period,
                                         rows=extracts.rows_for("referrals", period, n=15)))
        assert result.status == "published", result.reason
    period = "2032-W03"
    assert_quarantined(conn, extracts.write(tmp_path, "referrals", period,
                                            rows=extracts.rows_for("referrals", period, n=15)), "Volume")
    period = "2032-W09"  # sportlov
    assert_quarantined(conn, extracts.write(tmp_path, "referrals", period,
                                            rows=extracts.rows_for("referrals", period, n=5)), "Volume")


# --- quarantine release ------------------------------------------------------------------------

def test_release_republishes_after_the_reference_table_is_fixed(conn, tmp_path):
    from ewi.ingest import quarantine

    period = new_period()
    rows = extracts.rows_for("contacts", period)
    rows[0]["home_area_code"] = "2081C9980"
    held = assert_quarantined(conn, extracts.write(tmp_path, "contacts", period, rows=rows), "area register")
    assert held.batch_id in {q["batch_id"] for q in quarantine.list_quarantined()}

    still = quarantine.release(held.batch_id, "retry without a fix")
    assert still.status == "quarantined"

    conn.execute("insert into ref.areas values ('2081C9980', 'Ny stadsdel', 'C', 100, 5, 5, 5, 5, 5)")
    try:
        released = quarantine.release(held.batch_id, "area 2081C9980 added to the register")
        assert released.status == "published", released
        assert conn.execute("select count(*) from raw.contacts where batch_id = %s",
                            (held.batch_id,)).fetchone()[0] == 40
        assert conn.execute("select count(*) from quarantine.contacts where batch_id = %s",
                            (held.batch_id,)).fetchone()[0] == 0
        assert "area 2081C9980 added" in batch(conn, held.batch_id)["reason"]
    finally:
        conn.execute("delete from raw.contacts where home_area_code = '2081C9980'")
        conn.execute("delete from ref.areas where area_code = '2081C9980'")


def test_a_released_school_week_becomes_its_partition_with_the_constraints_a_typed_load_has(conn, tmp_path):
    """A release restores the rows as text; attaching then adds the NOT NULLs, the period check and
    the batch id that a first, typed load brings with it."""
    from ewi.ingest import quarantine

    period = new_period()
    rows = extracts.rows_for("school_absence", period)
    rows[0]["home_area_code"] = "2081C9970"
    held = assert_quarantined(conn, extracts.write(tmp_path, "school_absence", period, rows=rows), "area register")
    conn.execute("insert into ref.areas values ('2081C9970', 'Ny stadsdel', 'C', 100, 5, 5, 5, 5, 5)")
    try:
        released = quarantine.release(held.batch_id, "area 2081C9970 added to the register")
        assert released.status == "published", released
        partition = f"raw.school_absence_{held.batch_id}"
        assert conn.execute(f"select array_agg(distinct batch_id), count(*) from {partition}"  # noqa: S608
                            ).fetchone() == ([held.batch_id], len(rows))
        assert conn.execute("select count(*) from pg_constraint where conrelid = %s::regclass and contype = 'c'",
                            (partition,)).fetchone()[0] == 1
        assert not conn.execute("select count(*) from information_schema.columns where table_schema = 'raw' and "
                                "table_name = %s and is_nullable = 'YES'", (partition[4:],)).fetchone()[0]
    finally:
        conn.execute("delete from raw.school_absence where home_area_code = '2081C9970'")
        conn.execute("delete from ref.areas where area_code = '2081C9970'")


def test_releasing_a_quarantined_original_after_its_correction_was_published_changes_nothing(conn, tmp_path):
    """The original (delivered first) is held for an area missing from the register; its correction
    is published; then the area is added and the original released. The release must refuse: a
    correction is never undone by its original, even when the original would now pass the gate."""
    from ewi.ingest import quarantine

    period = new_period()
    rows = extracts.rows_for("contacts", period)
    rows[0]["home_area_code"] = "2081C9960"
    original = assert_quarantined(conn, extracts.write(tmp_path / "a", "contacts", period, rows=rows,
                                                       delivered=datetime(2030, 2, 1, 6, 0)), "area register")
    correction = ingest_one(extracts.write(tmp_path / "b", "contacts", period,
                                           rows=extracts.rows_for("contacts", period, n=38),
                                           delivered=datetime(2030, 2, 1, 7, 0)))
    assert correction.status == "published"
    before = snapshot(conn)
    conn.execute("insert into ref.areas values ('2081C9960', 'Ny stadsdel', 'C', 100, 5, 5, 5, 5, 5)")
    try:
        released = quarantine.release(original.batch_id, "area 2081C9960 added to the register")
        assert released.status == "quarantined" and released.reason.startswith("stale:"), released
        assert snapshot(conn) == before
        assert conn.execute("select array_agg(distinct batch_id), count(*) from raw.contacts where batch_id in "
                            "(%s, %s)", (original.batch_id, correction.batch_id)).fetchone() == (
            [correction.batch_id], 38)
        assert batch(conn, correction.batch_id)["status"] == "published"
        assert batch(conn, original.batch_id)["status"] == "quarantined"
        assert conn.execute("select count(*) from quarantine.contacts where batch_id = %s",
                            (original.batch_id,)).fetchone()[0] == 40
    finally:
        conn.execute("delete from raw.contacts where home_area_code = '2081C9960'")
        conn.execute("delete from ref.areas where area_code = '2081C9960'")


def test_a_quarantined_file_sent_again_is_a_duplicate_and_changes_nothing(conn, tmp_path):
    period = new_period()
    rows = extracts.rows_for("referrals", period)
    rows[0]["home_area_code"] = "2081C9961"
    path = extracts.write(tmp_path, "referrals", period, rows=rows)
    held = assert_quarantined(conn, path, "area register")
    before = snapshot(conn)
    again = ingest_one(path)
    assert again.status == "duplicate" and again.batch_id != held.batch_id, again
    assert again.reason == f"duplicate: same sha256 as batch {held.batch_id} (quarantined)"
    assert batch(conn, again.batch_id)["duplicate_of"] == held.batch_id
    assert batch(conn, held.batch_id)["status"] == "quarantined"
    assert conn.execute("select count(*) from quarantine.referrals where batch_id in (%s, %s)",
                        (held.batch_id, again.batch_id)).fetchone()[0] == 40
    assert not pending_tables(conn, again.batch_id)
    assert snapshot(conn) == before


# --- crash recovery ----------------------------------------------------------------------------

def test_a_retry_after_a_crash_resumes_the_pending_batch_without_doubling(conn, tmp_path):
    from ewi.ingest import reading

    period = new_period()
    path = extracts.write(tmp_path, "referrals", period)
    # Simulate a crash after the pending rows were written: run the write step, then stop.
    from ewi import warehouse
    from ewi.ingest import pending

    inspection = reading.inspect(path)
    with psycopg.connect(warehouse.dsn()) as c:
        pending.register(c, inspection, "crashedbatch" + period.replace("-", ""), resume=False)
        pending.write(c, inspection, "crashedbatch" + period.replace("-", ""))
    result = ingest_one(path)
    assert result.status == "published"
    assert result.batch_id == "crashedbatch" + period.replace("-", "")
    assert conn.execute("select count(*) from raw.referrals where batch_id = %s",
                        (result.batch_id,)).fetchone()[0] == 40
    assert conn.execute("select to_regclass(%s)", (f"pending.referrals_{result.batch_id}",)).fetchone()[0] is None


def test_a_delivery_name_is_parsed_once_on_its_way_through_the_gate(conn, tmp_path, monkeypatch):
    """One parsed delivery flows read -> write -> audit -> decide: each file's name is parsed once,
    whether it is published, quarantined or rejected (the flow parsed it three or four times)."""
    import sys

    from ewi import sources

    parsed = []

    def parse_file_name(name):
        parsed.append(name)
        return sources.parse_file_name(name)

    for name, module in list(sys.modules.items()):  # wherever the ingest holds the parser
        if name.startswith("ewi.ingest") and getattr(module, "parse_file_name", None) is sources.parse_file_name:
            monkeypatch.setattr(module, "parse_file_name", parse_file_name)
    period = new_period()
    rows = extracts.rows_for("contacts", period)
    rows[0]["home_area_code"] = "2081C9950"
    files = [extracts.write(tmp_path / "published", "referrals", period),
             extracts.write(tmp_path / "quarantined", "contacts", period, rows=rows),
             # content of its own: an empty file would be a duplicate of the empty-file test's
             extracts.write(tmp_path / "rejected", "school_absence", period,
                            content=f"no header row for {period}\n".encode())]
    results = ingest_files(files, docs_index=False)
    assert [r.status for r in results] == ["published", "quarantined", "rejected"]
    assert sorted(parsed) == sorted(f.name for f in files)


def test_data_docs_pages_and_index_are_built_and_a_stray_file_breaks_nothing(conn, tmp_path, ewi_home):
    docs = ewi_home / "gx" / "data_docs"
    (docs / "validations").mkdir(parents=True, exist_ok=True)
    (docs / "validations" / "stray.html").write_text("<p>not GX's</p>")
    result = ingest_one(extracts.write(tmp_path, "referrals", new_period()))
    assert result.status == "published"
    assert result.data_docs and os.path.exists(result.data_docs)
    assert result.batch_id in result.data_docs
    assert batch(conn, result.batch_id)["data_docs_path"] == result.data_docs
    (docs / "validations" / "stray.html").unlink()  # GX cannot index around it; later tests need the index


def test_data_docs_of_earlier_processes_are_kept(conn, tmp_path, ewi_home):
    """Each Airflow task is a new process with a new GX context: its index build must not delete the
    pages (and results) of batches validated by earlier processes."""
    from ewi.ingest import gate

    first = ingest_one(extracts.write(tmp_path, "contacts", new_period()))
    gate._contexts.clear()  # what a new worker process starts with
    second = ingest_one(extracts.write(tmp_path, "contacts", new_period()))
    assert first.data_docs != second.data_docs
    assert os.path.exists(first.data_docs) and os.path.exists(second.data_docs)
    index = (ewi_home / "gx" / "data_docs" / "index.html").read_text()
    assert first.batch_id in index and second.batch_id in index
    # The kept validation results hold counts, never a pseudonym.
    for path in (ewi_home / "gx" / "validation_results").rglob("*.json"):
        assert not re.search(r"[0-9a-f]{64}", path.read_text())
