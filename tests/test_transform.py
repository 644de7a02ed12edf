"""The dbt project and its write-audit-publish wrapper on a real embedded warehouse.

A hand-made data set (14 weeks, three areas) whose published cells are worked out by hand below:

- area A (2081C1010, youth population 827): pupils a0-a5 are 15 % absent (valid) every week, a6 is
  10 % invalidly absent, a7-a9 never absent; pupil m lives in C until week 8 and in A from week 9.
- area B (2081C1020, youth 755): pupils b0-b5 are 6 % invalidly absent (invalid flag, not chronic).
- area C (2081C1030, youth 564): pupils c0-c2, never absent (a denominator of 3 or 4: suppressed).
- week 9 (sportlov) has no scheduled minutes for anybody.
- referrals in week 10: a0-a5 in A (6), b5 in B (1), eight youths in C (8).
- contacts in week 11: b0-b4 in B; b0 was first contacted in A on the Monday (moved: counts in B).
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta

import psycopg
import pytest

pytestmark = pytest.mark.slow

A, B, C, D = "2081C1010", "2081C1020", "2081C1030", "2081C1040"
#: Its own warehouse database: other modules of the session write weeks of their own into the
#: default one, and this module's expected rows are every area x week x indicator of its data set.
WAREHOUSE_DB = "ewi_transform_tests"
WEEKS = [f"2026-W{n:02d}" for n in range(2, 16)]
HOLIDAY = "2026-W09"


def monday(iso_week: str) -> date:
    return date.fromisocalendar(int(iso_week[:4]), int(iso_week[6:]), 1)


def pseudonym(label: str) -> str:
    return hashlib.sha256(f"ewi-test-{label}".encode()).hexdigest()


def school_rows(week: str, overrides: dict[str, tuple[int, int]] | None = None) -> list[tuple]:
    """(person, week, school, area, birth_year, scheduled, valid, invalid) for every pupil."""
    n = int(week[6:])
    pupils = (
        [(f"a{i}", A, 150, 0) for i in range(6)]
        + [("a6", A, 0, 100)]
        + [(f"a{i}", A, 0, 0) for i in range(7, 10)]
        + [(f"b{i}", B, 0, 60) for i in range(6)]
        + [(f"c{i}", C, 0, 0) for i in range(3)]
        + [("m", C if n <= 8 else A, 0, 0)]
    )
    rows = []
    for label, area, valid, invalid in pupils:
        valid, invalid = (overrides or {}).get(label, (valid, invalid))
        scheduled = 0 if week == HOLIDAY else 1000
        if week == HOLIDAY:
            valid = invalid = 0
        rows.append((pseudonym(label), week, "12345678", area, 2012, scheduled, valid, invalid))
    return rows


def insert_school(conn, rows: list[tuple], batch: str) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "insert into raw.school_absence (batch_id, person_pseudonym, iso_week, school_unit_code, "
            "home_area_code, birth_year, scheduled_minutes, valid_absence_minutes, invalid_absence_minutes) "
            "values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(batch, *r) for r in rows],
        )


def insert_batch(conn, batch: str, source: str, period: str, rows: int) -> None:
    conn.execute(
        "insert into audit.batches (batch_id, source, period, file_name, file_sha256, file_size, status, "
        "rows_in_file, rows_published, decided_at) values (%s, %s, %s, %s, %s, 1, 'published', %s, %s, now())",
        (batch, source, period, f"{source}_{period}_20260401T0600.csv", hashlib.sha256(batch.encode()).hexdigest(),
         rows, rows),
    )


def load_data_set(conn) -> None:
    for week in WEEKS:
        rows = school_rows(week)
        insert_school(conn, rows, f"school-{week}")
        insert_batch(conn, f"school-{week}", "school_absence", week, len(rows))
    w10 = monday("2026-W10")
    referrals = [(f"r-a{i}", pseudonym(f"a{i}"), w10 + timedelta(days=1), A) for i in range(6)]
    referrals += [("r-b5", pseudonym("b5"), w10 + timedelta(days=2), B)]
    referrals += [(f"r-c{i}", pseudonym(f"ref-c{i}"), w10 + timedelta(days=3), C) for i in range(8)]
    with conn.cursor() as cur:
        cur.executemany(
            "insert into raw.referrals (batch_id, referral_id, person_pseudonym, received_date, home_area_code, "
            "birth_year, reporter_category, concern_category) values ('ref-W10', %s, %s, %s, %s, 2012, "
            "'school', 'other')",
            referrals,
        )
    insert_batch(conn, "ref-W10", "referrals", "2026-W10", len(referrals))
    w11 = monday("2026-W11")
    contacts = [(f"k-b{i}", pseudonym(f"b{i}"), w11 + timedelta(days=4), B) for i in range(5)]
    contacts += [("k-b0-early", pseudonym("b0"), w11, A)]
    with conn.cursor() as cur:
        cur.executemany(
            "insert into raw.contacts (batch_id, contact_id, person_pseudonym, contact_date, home_area_code, "
            "birth_year, contact_type, agency) values ('con-W11', %s, %s, %s, %s, 2012, 'outreach_worker', "
            "'social_services')",
            contacts,
        )
    insert_batch(conn, "con-W11", "contacts", "2026-W11", len(contacts))


def cell(conn, table: str, indicator: str, week: str, area: str | None = None) -> dict:
    where = "indicator = %s and iso_week = %s" + (" and area_code = %s" if area else "")
    params = (indicator, week, area) if area else (indicator, week)
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    row = cur.execute(f"select * from published.{table} where {where}", params).fetchone()  # noqa: S608
    assert row is not None, (table, indicator, week, area)
    return row


@pytest.fixture(scope="module")
def first_build(module_warehouse):
    from ewi import transform

    with psycopg.connect(module_warehouse, autocommit=True) as conn:
        load_data_set(conn)
    summary = transform.build()
    assert summary["success"], summary["failures"]
    return summary


@pytest.fixture(scope="module")
def conn(first_build, module_warehouse):
    with psycopg.connect(module_warehouse, autocommit=True) as c:
        yield c


def test_summary_is_json_able_and_complete(first_build):
    import json

    json.dumps(first_build)
    assert first_build["status"] == "success" and first_build["published"]
    counts = first_build["counts"]
    # unit tests test the SQL, not the data: left out of builds (test_dbt_unit_tests_pass runs them)
    assert counts["model"] >= 10 and counts["test"] >= 30 and counts["seed"] == 2 and counts["unit_test"] == 0
    assert counts["fail"] == counts["error"] == 0
    assert {"area_weekly_indicators", "area_trends", "municipality_weekly", "load_status"} <= set(
        first_build["published_models"])


def test_published_tables_have_the_contract_columns(conn):
    cols = dict(conn.execute(
        "select table_name, array_agg(column_name::text order by ordinal_position) from information_schema.columns "
        "where table_schema = 'published' group by table_name").fetchall())
    assert cols["area_weekly_indicators"] == [
        "area_code", "area_name", "week_start", "iso_week", "indicator", "numerator", "denominator", "rate",
        "rate_unit", "is_suppressed", "note"]
    assert {"rate_4w", "rate_12w", "rate_4w_change_1y", "municipality_rate_4w"} <= set(cols["area_trends"])
    assert {"indicator", "numerator", "denominator", "rate", "is_suppressed"} <= set(cols["municipality_weekly"])
    assert {"source", "last_published_period", "last_published_at", "gate_result", "gate_reason_code"} <= set(
        cols["load_status"])
    # The dashboard role reads load_status: a reason code, never the reason's text.
    assert not [c for c in cols["load_status"] if "reason" in c and c != "gate_reason_code"]
    assert conn.execute("select count(*) from information_schema.tables where table_schema = 'published_next'"
                        ).fetchone()[0] == 0


def test_every_area_week_and_indicator_is_a_row(conn):
    areas = conn.execute("select count(*) from ref.areas").fetchone()[0]
    rows = conn.execute("select count(*) from published.area_weekly_indicators").fetchone()[0]
    assert rows == areas * len(WEEKS) * 5
    empty = cell(conn, "area_weekly_indicators", "chronic_absence", "2026-W05", D)
    assert (empty["numerator"], empty["denominator"], empty["rate"], empty["note"]) == (
        0, 0, None, "no_scheduled_minutes")


def test_absence_cells_by_hand(conn):
    chronic = cell(conn, "area_weekly_indicators", "chronic_absence", "2026-W05", A)
    assert (chronic["numerator"], chronic["denominator"], float(chronic["rate"])) == (7, 10, 70.0)
    assert chronic["rate_unit"] == "percent" and not chronic["is_suppressed"]
    # m moved from C to A in week 9: counted in A from then on, although the window still holds C weeks
    assert cell(conn, "area_weekly_indicators", "chronic_absence", "2026-W09", A)["denominator"] == 11
    assert cell(conn, "area_weekly_indicators", "chronic_absence", "2026-W08", A)["denominator"] == 10
    # the holiday week itself (no minutes) does not look like zero absence: the window carries it
    holiday = cell(conn, "area_weekly_indicators", "chronic_absence", HOLIDAY, A)
    assert (holiday["numerator"], float(holiday["rate"])) == (7, 63.64)
    municipality = cell(conn, "municipality_weekly", "chronic_absence", "2026-W05")
    assert (municipality["numerator"], municipality["denominator"], float(municipality["rate"])) == (7, 20, 35.0)


def test_primary_and_secondary_suppression(conn):
    # invalid absence: A has 1 pupil (primary); B (6) is suppressed too, else 7 - 0 - 6 would give A
    a = cell(conn, "area_weekly_indicators", "invalid_absence", "2026-W05", A)
    b = cell(conn, "area_weekly_indicators", "invalid_absence", "2026-W05", B)
    assert a["is_suppressed"] and a["numerator"] is None and a["rate"] is None
    assert b["is_suppressed"] and b["numerator"] is None and b["rate"] is None
    assert cell(conn, "municipality_weekly", "invalid_absence", "2026-W05", None)["numerator"] == 7
    # C's 4 pupils (denominator) are suppressed, and B's 6 with them
    c = cell(conn, "area_weekly_indicators", "chronic_absence", "2026-W05", C)
    assert c["denominator"] is None and c["is_suppressed"] and c["rate"] is None
    assert cell(conn, "area_weekly_indicators", "chronic_absence", "2026-W05", B)["denominator"] is None
    # referrals in week 10: B has 1; the next smallest (A, 6) goes too; C's 8 stays
    assert cell(conn, "area_weekly_indicators", "referrals", "2026-W10", B)["is_suppressed"]
    assert cell(conn, "area_weekly_indicators", "referrals", "2026-W10", A)["is_suppressed"]
    ref_c = cell(conn, "area_weekly_indicators", "referrals", "2026-W10", C)
    assert (ref_c["numerator"], ref_c["denominator"], float(ref_c["rate"])) == (8, 564, 14.18)
    assert ref_c["rate_unit"] == "per_1000"
    assert cell(conn, "municipality_weekly", "referrals", "2026-W10")["numerator"] == 15


def test_no_published_count_between_one_and_four(conn):
    for table in ("area_weekly_indicators", "municipality_weekly"):
        small = conn.execute(
            f"select count(*) from published.{table} "  # noqa: S608
            "where numerator between 1 and 4 or denominator between 1 and 4").fetchone()[0]
        assert small == 0, table


def test_contacts_and_multi_signal_by_hand(conn):
    contacts = cell(conn, "area_weekly_indicators", "contacts", "2026-W11", B)
    assert (contacts["numerator"], float(contacts["rate"])) == (5, 6.62)  # b0 counts in B, not A
    assert cell(conn, "area_weekly_indicators", "contacts", "2026-W11", A)["numerator"] == 0
    # b5: invalid flag + referral in week 10 = 1 (suppressed); from week 11 b0-b5 = 6
    assert cell(conn, "area_weekly_indicators", "multi_signal", "2026-W10", B)["is_suppressed"]
    multi = cell(conn, "area_weekly_indicators", "multi_signal", "2026-W11", B)
    assert (multi["numerator"], float(multi["rate"])) == (6, 7.95)
    # a0-a5: chronic (not invalid) + referral is one signal kind only
    assert cell(conn, "area_weekly_indicators", "multi_signal", "2026-W11", A)["numerator"] == 0


def test_trends_and_load_status(conn):
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    trend = cur.execute(
        "select * from published.area_trends where area_code = %s and indicator = 'chronic_absence' "
        "and iso_week = '2026-W05'", (A,)).fetchone()
    assert float(trend["rate_4w"]) == 70.0 and float(trend["municipality_rate_4w"]) == 35.0
    assert trend["rate_12w"] is None and trend["rate_4w_change_1y"] is None
    suppressed = cur.execute(
        "select rate_4w from published.area_trends where area_code = %s and indicator = 'invalid_absence' "
        "and iso_week = '2026-W08'", (A,)).fetchone()
    assert suppressed["rate_4w"] is None
    status = {r["source"]: r for r in cur.execute("select * from published.load_status").fetchall()}
    assert status["school_absence"]["last_published_period"] == "2026-W15"
    assert status["referrals"]["gate_result"] == "published"


def _role_conn(dsn: str, role: str) -> psycopg.Connection:
    return psycopg.connect(psycopg.conninfo.make_conninfo(dsn, user=role), autocommit=True)


@pytest.mark.parametrize("role", ["ewi_dashboard", "ewi_auditor"])
def test_roles_read_published_but_not_pseudonymous_tables(conn, module_warehouse, role):
    with _role_conn(module_warehouse, role) as rc:
        assert rc.execute("select count(*) from published.area_weekly_indicators").fetchone()[0] > 0
        assert rc.execute("select count(*) from published.area_trends").fetchone()[0] > 0
        for table in ("raw.school_absence", "intermediate.int_absence_person_weeks",
                      "intermediate.int_person_signal_weeks", "staging.stg_referrals"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                rc.execute(f"select 1 from {table} limit 1")  # noqa: S608
        if role == "ewi_auditor":
            assert rc.execute("select count(*) from audit.batches").fetchone()[0] > 0
            assert rc.execute("select count(*) from audit.dbt_test_results").fetchone()[0] > 0
        else:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                rc.execute("select 1 from audit.batches limit 1")


def test_build_results_are_recorded(conn, first_build):
    run = conn.execute("select success, published from audit.dbt_runs where run_id = %s",
                       (first_build["run_id"],)).fetchone()
    assert run == (True, True)
    tests = conn.execute("select count(*), count(*) filter (where status = 'pass') from audit.dbt_test_results "
                         "where run_id = %s", (first_build["run_id"],)).fetchone()
    assert tests[0] >= 30 and tests[0] == tests[1]


def test_dbt_unit_tests_pass(first_build):
    """The dbt unit tests (models' SQL on fixed rows) gate here, in the test suite, not in builds."""
    import yaml

    from ewi import config, transform

    declared = sum(len((yaml.safe_load(doc.read_text(encoding="utf-8")) or {}).get("unit_tests") or [])
                   for doc in (config.DBT_PROJECT_DIR / "models").rglob("*.yml"))
    result = transform.unit_tests()
    assert result["success"], result["failures"]
    assert result["counts"]["unit_test"] == declared >= 10
    assert result["counts"]["pass"] == declared


def test_unchanged_seeds_are_not_reloaded_but_data_tests_run(conn, first_build):
    """An incremental build leaves out seeds whose table carries its file's checksum (and the tests of
    the seed files alone); a seed table without it is reloaded and tested, then marked again."""
    from ewi import transform

    def tests_run(summary) -> set[str]:
        return {r[0] for r in conn.execute("select test_name from audit.dbt_test_results where run_id = %s",
                                           (summary["run_id"],)).fetchall()}

    skipped = transform.build()
    assert skipped["success"] and not skipped["seeds_reloaded"] and skipped["counts"]["seed"] == 0
    ran = tests_run(skipped)
    assert "unique_areas_area_code" not in ran
    assert "relationships_stg_school_absence_home_area_code__area_code__ref_areas_" in ran
    mark = conn.execute("select obj_description('seeds.areas'::regclass, 'pg_class')").fetchone()[0]
    assert mark.startswith("ewi seed checksum ")

    conn.execute("comment on table seeds.areas is null")
    reloaded = transform.build()
    assert reloaded["success"] and reloaded["seeds_reloaded"] and reloaded["counts"]["seed"] == 2
    assert "unique_areas_area_code" in tests_run(reloaded)
    # a changed area register changes every week (populations), so the incremental counts start over
    assert reloaded["full_refresh"] and reloaded["full_refresh_reason"] == "the seed files changed or were never loaded"
    assert conn.execute("select obj_description('seeds.areas'::regclass, 'pg_class')").fetchone()[0] == mark


def test_correction_is_reprocessed_incrementally(conn):
    """Week 5 of B is corrected to no invalid absence: B's invalid flag goes in weeks 5-8, and only
    weeks from 5 on are recomputed."""
    from ewi import transform

    fixed = {f"b{i}": (0, 0) for i in range(6)}
    rows = school_rows("2026-W05", fixed)
    with conn.transaction():
        conn.execute("update audit.batches set status = 'superseded' where batch_id = 'school-2026-W05'")
        conn.execute("delete from raw.school_absence where batch_id = 'school-2026-W05'")
        insert_school(conn, rows, "school-2026-W05-fix")
        insert_batch(conn, "school-2026-W05-fix", "school_absence", "2026-W05", len(rows))
    summary = transform.build()
    assert summary["success"], summary["failures"]
    assert cell(conn, "municipality_weekly", "invalid_absence", "2026-W04")["numerator"] == 7
    # only a6 remains: 1 pupil in the municipality, suppressed
    assert cell(conn, "municipality_weekly", "invalid_absence", "2026-W05")["is_suppressed"]
    assert cell(conn, "municipality_weekly", "invalid_absence", "2026-W09")["numerator"] == 7
    first_rebuilt = conn.execute(
        "select min(week_start) from intermediate.int_absence_person_weeks "
        "where processed_at = (select max(processed_at) from intermediate.int_absence_person_weeks)").fetchone()[0]
    assert first_rebuilt == monday("2026-W05")


def test_published_source_rows_cannot_be_null_and_source_wide_keys_are_primary_keys(conn):
    """What the staging models need not test: every column of every source (ewi/sources.py) is NOT
    NULL in raw, and a key unique across all deliveries is raw's primary key."""
    from ewi.sources import SOURCES

    nullable = dict(conn.execute(
        "select table_name || '.' || column_name, is_nullable from information_schema.columns "
        "where table_schema = 'raw'").fetchall())
    keys = dict(conn.execute(
        """select c.conrelid::regclass::text, pg_get_constraintdef(c.oid) from pg_constraint as c
           where c.contype = 'p' and c.connamespace = 'raw'::regnamespace""").fetchall())
    for source in SOURCES.values():
        for column in source.column_names:
            assert nullable[f"{source.name}.{column}"] == "NO", (source.name, column)
        if source.key_scope == "source":
            assert keys[f"raw.{source.name}"] == f"PRIMARY KEY ({', '.join(source.key)})"


def test_small_intermediate_models_refuse_bad_rows_as_they_are_written(conn):
    """Their keys, NOT NULLs and ranges are enforced contract constraints, not data tests."""
    keys = dict(conn.execute(
        """select c.conrelid::regclass::text, pg_get_constraintdef(c.oid) from pg_constraint as c
           where c.contype = 'p' and c.connamespace = 'intermediate'::regnamespace""").fetchall())
    assert keys == {
        "intermediate.int_weeks": "PRIMARY KEY (week_start)",
        "intermediate.int_area_weekly_counts": "PRIMARY KEY (area_code, week_start, indicator)",
        "intermediate.alert_series": "PRIMARY KEY (area_code, week_start, indicator)",
        "intermediate.alert_ears": "PRIMARY KEY (area_code, week_start, indicator, method)",
    }
    with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
        conn.execute("insert into intermediate.int_weeks select * from intermediate.int_weeks limit 1")
    with pytest.raises(psycopg.errors.NotNullViolation), conn.transaction():
        conn.execute("update intermediate.int_weeks set iso_week = null")
    with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():
        conn.execute("update intermediate.alert_series set observed = -1")


def test_failing_test_leaves_published_untouched(conn):
    from ewi import transform

    before = conn.execute("select * from published.area_weekly_indicators order by 1, 3, 5").fetchall()
    conn.execute(
        "insert into raw.school_absence (batch_id, person_pseudonym, iso_week, school_unit_code, home_area_code, "
        "birth_year, scheduled_minutes, valid_absence_minutes, invalid_absence_minutes) "
        "values ('bad', %s, '2026-W15', '12345678', '2081X9999', 2012, 1000, 0, 0)", (pseudonym("intruder"),))
    # recorded as the gate records what it publishes: a build reads the weeks published since the last one
    insert_batch(conn, "bad", "school_absence", "2026-W15", 1)
    try:
        summary = transform.build()
    finally:
        conn.execute("delete from raw.school_absence where batch_id = 'bad'")
        conn.execute("delete from audit.batches where batch_id = 'bad'")
    assert not summary["success"] and summary["status"] == "failed" and not summary["published"]
    assert any("relationships" in f["node"] for f in summary["failures"])
    assert all(pseudonym("intruder") not in (f["message"] or "") for f in summary["failures"])
    after = conn.execute("select * from published.area_weekly_indicators order by 1, 3, 5").fetchall()
    assert after == before
    failed = conn.execute("select count(*) from audit.dbt_test_results where run_id = %s and status = 'fail'",
                          (summary["run_id"],)).fetchone()[0]
    assert failed >= 1

    # The failed build wrote the intruder into a per-person model whose tests it did not wait for
    # (they read the area register too); the next build recomputes everything, so it is gone.
    intruder = ("select count(*) from intermediate.int_absence_person_weeks where person_pseudonym = %s",
                (pseudonym("intruder"),))
    assert conn.execute(*intruder).fetchone()[0] == 1
    recovered = transform.build()
    assert recovered["success"], recovered["failures"]
    assert recovered["full_refresh"] and recovered["full_refresh_reason"] == "the previous build failed"
    assert conn.execute(*intruder).fetchone()[0] == 0


def test_the_farrington_task_runs_beside_the_build_and_area_alerts_waits_for_it(conn, first_build):
    """One dbt invocation: the Farrington results area_alerts publishes are this build's own (on the
    first build the table was empty, so a model that did not wait would publish none)."""
    assert any(p["phase"].startswith("farrington") for p in first_build["timings"]["phases"])
    assert sum(p["phase"].startswith("build") for p in first_build["timings"]["phases"]) == 1
    computed = conn.execute("select count(*) from alerts.farrington_results").fetchone()[0]
    published = conn.execute("select count(*) from published.area_alerts where method = 'farrington'").fetchone()[0]
    assert computed > 0 and published == computed


def test_a_failed_farrington_run_fails_the_build_and_leaves_published_untouched(conn, monkeypatch):
    import ewi.alerts
    from ewi import transform

    def broken(*args, **kwargs):
        raise RuntimeError("Farrington could not run")

    monkeypatch.setattr(ewi.alerts, "run_farrington", broken)
    before = conn.execute("select * from published.area_alerts order by 1, 3, 5, 6").fetchall()
    summary = transform.build()
    assert not summary["success"] and not summary["published"]
    assert {"node": "farrington", "message": "RuntimeError: Farrington could not run"} in summary["failures"]
    assert conn.execute("select * from published.area_alerts order by 1, 3, 5, 6").fetchall() == before


def test_docs_keep_lineage_for_the_auditors(first_build, tmp_path):
    import json

    from ewi import transform

    result = transform.docs(tmp_path / "dbt-docs")
    assert result["success"] and set(result["files"]) == {"index.html", "manifest.json", "catalog.json"}
    manifest = json.loads((tmp_path / "dbt-docs" / "manifest.json").read_text())
    assert {"exposure.ewi.coordinator_dashboard", "exposure.ewi.auditor_dashboard"} <= set(manifest["exposures"])
    assert manifest["nodes"]["model.ewi.area_weekly_indicators"]["schema"] == "published"
