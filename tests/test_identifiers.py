"""Personal identity numbers in every form a keyboard or a source system produces: each bad form is a
real file through the real ingest, rejected before anything is written, and never echoed.

Every number here is synthetic or Skatteverket's published example 121212-1212, and every check
digit was worked out by hand (Luhn: weights 2, 1, 2, … from the left over YYMMDD + the three-digit
birth number, a product above 9 counts as the sum of its digits, the check digit makes the total a
multiple of 10), never with the module under test:

    121212-121?  2 2 2 2 2 2 2 2 2 = 18                  -> 2   121212-1212 (Skatteverket's example)
    121212-T21?  T reads as 1: the same digits = 18      -> 2   121212-T212 (an interim number)
    120191-123?  2 2 0 1 (18: 9) 1 2 2 6 = 25            -> 5   120191-1235 (samordningsnummer,
                                                                 31 January 2012 + 60 = day 91)
    121312-121?  2 2 2 3 2 2 2 2 2 = 19                  -> 1   121312-1211 (month 13: no date)
    811218-987?  (16: 7) 1 2 2 2 8 (18: 9) 8 (14: 5) = 44 -> 6   811218-9876
    790101-123?  (14: 5) 9 0 1 0 1 2 2 6 = 26            -> 4   790101-1234 (a 9 at weight 1)
    120161-123?  2 2 0 1 (12: 3) 1 2 2 6 = 19            -> 1   120161-1231 (samordningsnummer, day 61)
    000229-123?  0 0 0 2 4 9 2 2 6 = 25                  -> 5   000229-1235 (29 February 2000)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import uuid
from datetime import date, timedelta

import pytest

from ewi.ingest import ingest_files
from ewi.ingest.identifiers import contains_identity_number
from ewi.ingest.reading import safe_file_name
from ewi.sources import SOURCES, iso_week_of
from tests import extracts

SKATTEVERKET = "121212-1212"
SKATTEVERKET_12 = "19121212-1212"
PUPIL_12 = "20121212-1212"  # the same date and birth number, born this century
INTERIM = "121212-T212"
SAMORDNING_DAY_91 = "120191-1235"
LUHN_VALID_MONTH_13 = "121312-1211"

WAREHOUSE_DB = "ewi_identifier_tests"
_weeks = itertools.count()


def new_period() -> str:
    return iso_week_of(date(2031, 1, 6) + timedelta(weeks=next(_weeks)))


@pytest.fixture(scope="module")
def conn(module_db):
    return module_db


def everything_stored(conn) -> str:
    """Every row of every table a delivery can reach, and the audit trail, as one text."""
    tables = [f"{schema}.{source}" for schema in ("pending", "quarantine", "raw") for source in SOURCES]
    parts = [conn.execute(f"select coalesce(string_agg(t::text, '|'), '') from {table} t").fetchone()[0]  # noqa: S608
             for table in [*tables, "audit.batches", "audit.check_results"]]
    return "|".join(parts)


def digits_of(value: str) -> str:
    return re.sub(r"\D", "", value.translate({ord(c): str(i) for i, c in enumerate("０１２３４５６７８９")}))


def assert_rejected_without_trace(conn, path, caplog, value, code="direct_identifier"):
    with caplog.at_level(logging.DEBUG):
        [result] = ingest_files([path])
    assert result.status == "rejected", result.status
    assert result.reason.startswith(code + ":"), result.reason
    row = conn.execute("select status, reason from audit.batches where batch_id = %s", (result.batch_id,)).fetchone()
    assert row == ("rejected", result.reason)
    stored = everything_stored(conn)
    for form in (value, digits_of(value)[-10:]):  # as written, and its digits
        assert form not in json.dumps(result.as_dict(), ensure_ascii=False), "the number is in the result"
        assert form not in caplog.text, "the number is in the log"
        assert form not in stored, "the number reached a table"
    return result


# --- every form of the number, in a real file --------------------------------------------------

FORMS = [
    pytest.param("121212 1212", id="space"),
    pytest.param("121212\u20131212", id="en-dash"),
    pytest.param("121212\u00a01212", id="no-break-space"),
    pytest.param("121212\t1212", id="tab"),
    pytest.param("121212\u22121212", id="minus-sign"),
    pytest.param("121212 - 1212", id="spaced-dash"),
    pytest.param("\uff11\uff12\uff11\uff12\uff11\uff12-\uff11\uff12\uff11\uff12", id="full-width-digits"),
    pytest.param("\u0661\u0662\u0661\u0662\u0661\u0662-\u0661\u0662\u0661\u0662", id="arabic-indic-digits"),
    pytest.param("R191212121212", id="letter-before-12-digits"),
    pytest.param("P121212-1212", id="letter-before-10"),
    pytest.param("elev121212-1212x", id="letters-both-sides"),
    pytest.param("ab1212121212", id="hex-letters-before"),
    pytest.param("1212121212kk", id="letters-after"),
    pytest.param(INTERIM, id="interim-number"),
    pytest.param("121212T212", id="interim-number-unseparated"),
    pytest.param(SKATTEVERKET, id="skatteverket-example"),  # kills a Luhn with its weights swapped
    pytest.param(SKATTEVERKET_12, id="skatteverket-example-12"),
    pytest.param(PUPIL_12, id="born-this-century-12-digits"),
    pytest.param("20121212T212", id="interim-born-this-century"),
    pytest.param("nr-1212121212", id="glued-after-dash"),
    pytest.param("tel+1212121212", id="glued-after-plus"),
    pytest.param(SAMORDNING_DAY_91, id="samordningsnummer-day-91"),
    pytest.param("120161-1231", id="samordningsnummer-day-61"),
    pytest.param("811218-9876", id="products-above-9"),
    pytest.param("790101-1234", id="a-9-at-weight-1"),
    pytest.param("000229-1235", id="29-february-2000-without-century"),
    pytest.param("18121212-1212", id="century-18"),
    pytest.param("121212-X212", id="interim-letter-x"),
    pytest.param("arende1212121212", id="after-a-word-ending-in-hex-letters"),
    pytest.param("Xaaaaaaaaaaaaaaaaaaaaa1212121212", id="31-hex-characters-are-not-a-hash"),
    pytest.param("121212 1212" + "abcdef" * 4, id="a-serial-in-28-hex-characters"),
    pytest.param("121212\u00ad1212", id="soft-hyphen"),
    pytest.param("121212\u200b1212", id="zero-width-space"),
]


@pytest.mark.parametrize("value", FORMS)
def test_an_identity_number_in_any_form_rejects_a_utf8_file(conn, tmp_path, caplog, value):
    period = new_period()
    rows = extracts.rows_for("referrals", period)
    rows[11]["concern_category"] = f"samtal {value} om skolan"
    assert_rejected_without_trace(conn, extracts.write(tmp_path, "referrals", period, rows=rows), caplog, value)


@pytest.mark.parametrize("value", [
    pytest.param("121212\u20131212", id="en-dash"),  # byte 0x96
    pytest.param("121212\u00a01212", id="no-break-space"),  # byte 0xA0
    pytest.param("R191212121212", id="glued"),
])
def test_an_identity_number_rejects_a_windows_1252_file(conn, tmp_path, caplog, value):
    period = new_period()
    rows = extracts.rows_for("contacts", period)
    rows[3]["agency"] = f"förvaltning {value}"
    path = extracts.write(tmp_path, "contacts", period, rows=rows, delimiter=";", encoding="cp1252")
    assert_rejected_without_trace(conn, path, caplog, value)


def test_an_identity_number_rejects_a_utf8_file_with_a_byte_order_mark(conn, tmp_path, caplog):
    period = new_period()
    rows = extracts.rows_for("contacts", period)
    rows[3]["agency"] = "förvaltning 121212\u20131212"
    path = extracts.write(tmp_path, "contacts", period, rows=rows, bom=True)
    assert_rejected_without_trace(conn, path, caplog, "121212\u20131212")


def test_a_number_in_the_last_line_of_a_large_file_is_found(conn, tmp_path, caplog):
    """Past the first read block (1 MiB), and after a non-ASCII line."""
    period = new_period()
    rows = extracts.rows_for("school_absence", period, n=12000)
    rows[100]["school_unit_code"] = "Skolenhet Ö"
    rows[-1]["school_unit_code"] = "121212\u20131212"
    path = extracts.write(tmp_path, "school_absence", period, rows=rows)
    assert path.stat().st_size > 1 << 20
    assert_rejected_without_trace(conn, path, caplog, "121212\u20131212")


def test_ewi_ingest_rejects_the_file_and_prints_no_number(conn, tmp_path, capsys):
    from ewi.cli import EXIT_GATE, EXIT_USAGE, main

    period = new_period()
    rows = extracts.rows_for("referrals", period)
    rows[7]["reporter_category"] = "P121212\u20131212"
    path = extracts.write(tmp_path, "referrals", period, rows=rows)
    assert main(["ingest", "--json", str(path)]) == EXIT_GATE
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["reason"].startswith("direct_identifier:")
    assert "121212" not in line
    (tmp_path / "121212-1212").mkdir()
    for not_a_file in ("elev_121212\u20131212.csv", "121212-1212"):  # missing; a directory
        assert main(["ingest", str(tmp_path / not_a_file)]) == EXIT_USAGE
        assert "121212" not in capsys.readouterr().err


# --- what is not a number: the file is published -----------------------------------------------

def _date_and_luhn_valid_runs(text: str) -> int:
    """How many maximal 10-digit runs pass a date and a Luhn check: the test's own check, so that
    the pseudonyms below are known to hold runs the detector must leave alone."""
    found = 0
    for run in re.findall(r"(?<!\d)\d{10}(?!\d)", text):
        products = [int(c) * (2 - i % 2) for i, c in enumerate(run)]
        month, day = int(run[2:4]), int(run[4:6]) % 60 or 60
        if sum(p // 10 + p % 10 for p in products) % 10 == 0 and 1 <= month <= 12 and 1 <= day <= 31:
            found += 1
    return found


# Pseudonyms (SHA-256 of test-person-<i>) and UUIDs whose digit runs, glued to hex letters, pass the
# date and Luhn checks by chance: a hash or UUID is not text with a number in it.
HASH_LIKE_PSEUDONYMS = [extracts.pseudonym(i) for i in (6415, 65640, 71119, 76033)]
HASH_LIKE_IDS = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"referral-{i}")) for i in (32842, 36171, 36521, 43783)]


def test_pseudonyms_and_uuids_whose_digits_pass_the_checks_are_published(conn, tmp_path):
    assert all(_date_and_luhn_valid_runs(p) for p in HASH_LIKE_PSEUDONYMS)
    assert all(_date_and_luhn_valid_runs(i) for i in HASH_LIKE_IDS)
    period = new_period()
    rows = extracts.rows_for("referrals", period)
    for row, pseudonym in zip(rows, HASH_LIKE_PSEUDONYMS, strict=False):
        row["person_pseudonym"] = pseudonym
    for row, referral_id in zip(rows[10:], HASH_LIKE_IDS, strict=False):
        row["referral_id"] = referral_id
    [result] = ingest_files([extracts.write(tmp_path, "referrals", period, rows=rows)])
    assert result.status == "published", result.reason


def test_a_luhn_valid_number_with_an_impossible_date_is_published(conn, tmp_path):
    period = new_period()
    rows = extracts.rows_for("referrals", period)
    rows[5]["referral_id"] = LUHN_VALID_MONTH_13
    [result] = ingest_files([extracts.write(tmp_path, "referrals", period, rows=rows)])
    assert result.status == "published", result.reason


# --- file names and manifests -------------------------------------------------------------------

@pytest.mark.parametrize(("number", "recorded_as"), [
    (SKATTEVERKET, "[redacted]"),
    ("121212\u20131212", "[redacted]"),
    ("R191212121212", "R[redacted]"),  # the letter is not part of the number
    ("\uff11\uff12\uff11\uff12\uff11\uff12\uff11\uff12\uff11\uff12", "[redacted]"),
])
def test_a_file_name_holding_a_number_is_recorded_redacted(conn, tmp_path, caplog, number, recorded_as):
    path = extracts.write(tmp_path, "referrals", new_period(), name=f"referrals_{number}_elev.csv")
    result = assert_rejected_without_trace(conn, path, caplog, number, code="file_name")
    recorded = conn.execute("select file_name from audit.batches where batch_id = %s",
                            (result.batch_id,)).fetchone()[0]
    assert recorded == result.file == f"referrals_{recorded_as}_elev.csv"


@pytest.mark.parametrize("manifest", [
    pytest.param({"row_count": 1212121212}, id="as-row-count"),  # once echoed by the truncated reason
    pytest.param({"note": f"sent by {SKATTEVERKET}"}, id="in-another-field"),
    pytest.param({"note": "sent by 121212\u20131212"}, id="json-escaped-dash"),  # written as \u2013
])
def test_a_manifest_holding_a_number_is_refused_and_nothing_of_it_echoed(conn, tmp_path, caplog, manifest):
    period = new_period()
    path = extracts.write(tmp_path, "referrals", period)
    body = {"source": "referrals", "period": period, "row_count": 40,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), **manifest}
    path.with_name(path.name + ".manifest.json").write_text(json.dumps(body))  # non-ASCII as \uXXXX
    assert_rejected_without_trace(conn, path, caplog, "121212-1212")


# --- column names: any case ---------------------------------------------------------------------

@pytest.mark.parametrize("column", ["PERSONNUMMER", "Namn", "Personnummer", "E_MAIL"])
def test_a_column_named_like_an_identifier_in_any_case_is_rejected(conn, tmp_path, column):
    cols = [*SOURCES["referrals"].column_names, column]
    path = extracts.write(tmp_path, "referrals", new_period(), columns=cols)
    [result] = ingest_files([path])
    assert result.status == "rejected" and result.reason.startswith("direct_identifier:"), result.reason


# --- the detector alone, on hand-worked cases ---------------------------------------------------

@pytest.mark.parametrize("value", FORMS)
def test_the_detector_finds_every_form(value):
    assert contains_identity_number(f"x,{value},y")
    assert contains_identity_number(value)  # at the very start of a text, nothing in front


@pytest.mark.parametrize("value", [
    pytest.param("121212-1213", id="check-digit-off-by-one"),
    pytest.param(LUHN_VALID_MONTH_13, id="impossible-date"),
    pytest.param("121212-0008", id="birth-number-000"),  # 2 2 2 2 2 2 0 0 0 = 12 -> 8: never issued
    pytest.param("121212-A212", id="not-an-interim-letter"),
    pytest.param("121212-G212", id="not-an-interim-letter-nor-hex"),
    pytest.param("121212X1212", id="a-letter-is-no-separator"),
    pytest.param("51121212-1212", id="12-digits-of-no-century"),
    pytest.param("11212121212", id="11-digit-run"),
    pytest.param("9fe1212121212", id="digits-then-letters-in-front"),
    pytest.param("school_absence_2026-W47_20261123T0612.csv", id="delivery-file-name"),
    pytest.param("2026-W10,12345678,1370,216,2081C1070,2011", id="a-school-row"),
    pytest.param("a" * 22 + "1212121212", id="in-a-32-hex-run"),
    pytest.param("121212 1212" + "a" * 28, id="serial-in-a-32-hex-run"),
    pytest.param("a" * 26 + "121212 1212", id="head-in-a-32-hex-run"),
    pytest.param("ab121212-1212-4abc-8def-abcdefabcdef", id="in-a-uuids-first-groups"),
])
def test_the_detector_leaves_codes_alone(value):
    assert not contains_identity_number(value)


@pytest.mark.parametrize("value", ["1212121212 x", "ab1212121212 x", "R121212-1212", " 121212 1212"])
def test_the_detector_finds_a_number_at_the_very_start(value):
    assert contains_identity_number(value)


def test_file_name_redaction_replaces_each_number_in_place():
    assert safe_file_name("a 121212\u20131212 b R191212121212.csv") == "a [redacted] b R[redacted].csv"


def test_the_detector_leaves_hashes_and_uuids_alone():
    assert all(_date_and_luhn_valid_runs(v) for v in HASH_LIKE_PSEUDONYMS + HASH_LIKE_IDS)
    for value in HASH_LIKE_PSEUDONYMS + HASH_LIKE_IDS:
        assert not contains_identity_number(f"x,{value},y")
    for i in range(20000):
        assert not contains_identity_number(extracts.pseudonym(i))


@pytest.mark.parametrize("value", [pytest.param("121212\u20131212", id="en-dash"),
                                   pytest.param("R191212121212", id="glued"),
                                   pytest.param(SKATTEVERKET, id="plain")])
def test_a_command_error_reason_never_carries_a_number(value):
    from ewi.errors import safe_reason

    reason = safe_reason(f"could not read elev_{value}.csv")
    assert reason.count("<redacted>") == 1
    assert digits_of(value)[-10:] not in digits_of(reason)


# --- the checks' edges, each worked out by hand (a mutation run found them untested) ---------------
#   191212-121?  2 9 2 2 2 2 2 2 2 = 25: a weight-1 nine counts as 9   -> 5   191212-1215
#   811218-987?  two doubled digits above 9 (16: 7, 18: 9), as above    -> 6   811218-9876
#   120161-123?  2 2 0 1 (12: 3) 1 2 2 6 = 19                         -> 1   120161-1231 (the 1st + 60)
#   000229-123?  0 0 0 2 4 9 2 2 6 = 25                               -> 5   000229-1235 (29 Feb 2000)
#   121212-500?  2 2 2 2 2 2 (10: 1) 0 0 = 13: a doubled five counts 1 -> 7   121212-5007
# and Luhn-valid numbers of no date: 120431-1235 (31 April), 130229-1230 (29 February 2013),
# 19000229-1235 (1900 was no leap year, though 2000 was)
EDGES_FOUND = [
    pytest.param("191212-1215", id="a-weight-1-nine"),
    pytest.param("811218-9876", id="doubled-digits-above-9"),
    pytest.param("120161-1231", id="samordningsnummer-on-the-first"),
    pytest.param("000229-1235", id="29-february-2000"),
    pytest.param("18121212-1212", id="century-18"),
    pytest.param("121212-5007", id="a-doubled-five"),
]
EDGES_LEFT = [
    pytest.param("191212-1216", id="a-weight-1-nine-check-digit-off"),
    pytest.param("811218-9877", id="doubled-digits-check-digit-off"),
    pytest.param("121212-Z212", id="a-letter-that-is-no-interim-letter"),
    pytest.param("120431-1235", id="31-april"),
    pytest.param("130229-1230", id="29-february-of-no-leap-year"),
    pytest.param("19000229-1235", id="29-february-1900"),
]


@pytest.mark.parametrize("value", EDGES_FOUND)
def test_the_detector_finds_the_checks_edges(value):
    assert contains_identity_number(f"x,{value},y")


@pytest.mark.parametrize("value", EDGES_LEFT)
def test_the_detector_leaves_the_checks_edges_alone(value):
    assert not contains_identity_number(f"x,{value},y")
