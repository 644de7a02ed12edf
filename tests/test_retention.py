"""Retention and erasure (issue 17) on a warehouse the real pipeline built: synthetic extracts through
the gate (one correction quarantined), a dbt build, then `retention.apply` and `retention.erase`.

After retention nothing older than the policy is left in any table or file under EWI_HOME, the
published aggregates of the cut weeks remain (also through a full refresh), and every deletion is an
audit row of counts. After an erasure the pseudonym is in no table (pg_dump), in no file under
EWI_HOME outside the warehouse's data directory, nor in the database's own data files; WAL aside
(docs/decisions.md). The audit tables refuse changes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from ewi import config, warehouse
from ewi.sources import iso_week_of, iso_week_start, parse_file_name

pytestmark = pytest.mark.slow

WEEKS = 22
#: the last complete week, so that the policy (counted from today) cuts the oldest weeks
END_WEEK = iso_week_of(date.today() - timedelta(days=7))
WAREHOUSE_DB, SYNTH_SEED = "ewi_retention_tests", 171
KEEP_WEEKS = 18  # cuts the oldest 4 weeks; the newest 4 weeks are recounted (14 after the cut are not)
OLD = (datetime.now(UTC) - timedelta(days=500)).timestamp()


@pytest.fixture(scope="module")
def built(module_db, synthetic_extracts, tmp_path_factory):
    """Every week ingested and built; a correction of the newest referrals week quarantined (a
    birth year out of range); delivered files archived to landing/processed as the DAG does."""
    from ewi import transform
    from ewi.ingest import ingest_files

    os.environ["EWI_RETENTION_PSEUDONYMOUS_WEEKS"] = str(KEEP_WEEKS)
    # a landing folder of the module's own under EWI_HOME: other modules' deliveries are not ours to cut
    os.environ["EWI_LANDING_DIR"] = str(config.ewi_home() / "landing-retention-tests")
    files = sorted(synthetic_extracts.glob("*.csv"))
    results = ingest_files(files, docs_index=False)
    assert "published" in {r.status for r in results} and "rejected" not in {r.status for r in results}
    newest = max(f for f in files if f.name.startswith("referrals_"))
    bad = _bad_correction(newest, tmp_path_factory.mktemp("bad"), "2359")
    assert [r.status for r in ingest_files([bad], docs_index=False)] == ["quarantined"]
    summary = transform.build()
    assert summary["success"], summary["failures"]
    processed = config.landing_dir() / "processed"
    for status, paths in (("published", files), ("quarantined", [bad])):
        (processed / status).mkdir(parents=True, exist_ok=True)
        for path in paths:
            shutil.copy2(path, processed / status / path.name)
    yield {"conn": module_db, "files": files, "quarantined": bad}
    os.environ.pop("EWI_RETENTION_PSEUDONYMOUS_WEEKS", None)
    os.environ.pop("EWI_LANDING_DIR", None)


def _bad_correction(delivered: Path, folder: Path, at: str, sparing: str | None = None,
                    year: str = "1900") -> Path:
    """A correction of a delivered referrals file that the gate quarantines: one row's birth year out
    of range (not the row of pseudonym `sparing`, which stays in the file as delivered)."""
    delivery = parse_file_name(delivered.name)
    lines = delivered.read_bytes().decode("cp1252").splitlines()
    header = lines[0].split(";")
    at_row = next(i for i, line in enumerate(lines[1:], 1) if sparing is None or sparing not in line)
    row = lines[at_row].split(";")
    row[header.index("birth_year")] = year
    lines[at_row] = ";".join(row)
    bad = folder / f"referrals_{delivery.period}_{delivery.delivered:%Y%m%d}T{at}.csv"
    bad.write_bytes("\r\n".join(lines).encode("cp1252") + b"\r\n")
    return bad


def _one(conn, query: str, *params):
    return conn.execute(query, params).fetchone()[0]


def _published_weeks(conn) -> list:
    return [r[0] for r in conn.execute(
        "select distinct week_start from published.area_weekly_indicators order by 1").fetchall()]


def _area_counts(conn) -> list[tuple]:
    return conn.execute("select area_code, week_start, indicator, numerator, denominator "
                        "from intermediate.int_area_weekly_counts order by 1, 2, 3").fetchall()


def test_retention_leaves_nothing_older_than_the_policy_and_keeps_the_published_aggregates(built):
    from ewi import retention, transform

    conn, home = built["conn"], config.ewi_home()
    # files past their days: a GX result, an Airflow log, a lineage event, the quarantined delivery
    gx_old = home / "gx" / "validation_results" / "retention-test" / "old.json"
    gx_old.parent.mkdir(parents=True, exist_ok=True)
    gx_old.write_text("{}")
    log_old = home / "airflow" / "logs" / "dag_id=x" / "old.log"
    log_old.parent.mkdir(parents=True, exist_ok=True)
    log_old.write_text("a task log\n")
    lineage = home / retention.LINEAGE_FILE
    lineage.parent.mkdir(parents=True, exist_ok=True)
    old_event = {"eventTime": datetime.fromtimestamp(OLD, UTC).isoformat(), "eventType": "COMPLETE"}
    new_event = {"eventTime": datetime.now(UTC).isoformat(), "eventType": "COMPLETE"}
    with lineage.open("a", encoding="utf-8") as events:  # other modules' events stay
        events.write(json.dumps(old_event) + "\n" + json.dumps(new_event) + "\n")
    quarantined_file = config.landing_dir() / "processed" / "quarantined" / built["quarantined"].name
    for path in (gx_old, log_old, quarantined_file):
        os.utime(path, (OLD, OLD))
    conn.execute("update quarantine.referrals set quarantined_at = now() - interval '40 days'")

    pol = retention.policy()
    assert pol.kept_from == date.today() - timedelta(days=date.today().weekday()) - timedelta(weeks=KEEP_WEEKS)
    published_before = _published_weeks(conn)
    assert published_before[0] < pol.kept_from  # the fixture has weeks the policy cuts

    dry = retention.apply(dry_run=True)
    assert dry["rows"] > 0 and dry["files"] > 0 and dry["retention_run"] is None
    assert _one(conn, "select min(iso_week) from raw.school_absence") < pol.kept_from_week  # nothing gone

    done = retention.apply()
    assert (done["rows"], done["files"]) == (dry["rows"], dry["files"])

    # tables: no pseudonymous row of a week before kept_from, no quarantined batch past its days
    assert _one(conn, "select min(iso_week) from raw.school_absence") == pol.kept_from_week
    bounds = [b for (b,) in conn.execute(
        "select pg_get_expr(c.relpartbound, c.oid) from pg_inherits as i join pg_class as c on c.oid = i.inhrelid "
        "where i.inhparent = 'raw.school_absence'::regclass").fetchall()]
    assert all(b == "DEFAULT" or b[-10:-2] >= pol.kept_from_week for b in bounds), "a cut week's partition is left"
    for table, column in (("raw.referrals", "received_date"), ("raw.contacts", "contact_date"),
                          ("intermediate.int_pupil_weeks", "week_start"),
                          ("intermediate.int_absence_person_weeks", "week_start"),
                          ("intermediate.int_person_signal_weeks", "week_start")):
        assert _one(conn, f"select count(*) from {table} where {column} < %s", pol.kept_from) == 0, table  # noqa: S608
        assert _one(conn, f"select count(*) from {table}") > 0, table  # noqa: S608
    assert _one(conn, "select count(*) from quarantine.referrals") == 0

    # files: nothing under EWI_HOME older than its limit
    assert not gx_old.exists() and not log_old.exists() and not quarantined_file.exists()
    for folder, before in [*((f, pol.gx_before) for f in retention.GX_RESULT_DIRS),
                           *((f, pol.logs_before) for f in retention.LOG_DIRS)]:
        for path in (home / folder).rglob("*"):
            assert not path.is_file() or datetime.fromtimestamp(path.stat().st_mtime, UTC) >= before, path
    for path in (config.landing_dir() / "processed" / "published").iterdir():
        assert iso_week_start(parse_file_name(path.name).period) >= pol.kept_from, path.name
    # other modules' Airflow runs may have written events of other kinds into the same file
    times = [json.loads(line).get("eventTime") for line in lineage.read_text().splitlines()]
    assert new_event["eventTime"] in times and old_event["eventTime"] not in times

    # the audit: one run, a row per partition, batch, table and folder, counts that add up
    run = conn.execute("select kept_from, rows_deleted, files_deleted, policy from audit.retention_runs "
                       "where id = %s", (done["retention_run"],)).fetchone()
    assert run[0] == pol.kept_from and run[1] == done["rows"] and run[2] == done["files"]
    assert run[3]["pseudonymous_weeks"] == KEEP_WEEKS
    by_action = dict(conn.execute("select action, count(*) from audit.deletions where retention_run = %s "
                                  "group by 1", (done["retention_run"],)).fetchall())
    assert by_action["drop_partition"] == len([w for w in published_before if w < pol.kept_from])
    assert {"delete_rows", "delete_files", "rewrite_files"} <= set(by_action)
    assert _one(conn, "select sum(rows) from audit.deletions where retention_run = %s", done["retention_run"]) \
        == done["rows"]

    # published aggregates are kept: by the next build, and by a full refresh, with the same counts
    counts = _area_counts(conn)
    for full_refresh in (False, True):
        summary = transform.build(full_refresh=full_refresh)
        assert summary["success"], summary["failures"]
        assert _published_weeks(conn) == published_before
        assert _area_counts(conn) == counts, f"full_refresh={full_refresh}"

    # applied again: nothing left to delete
    again = retention.apply()
    assert again["rows"] == 0 and again["files"] == 0


def test_the_audit_tables_of_retention_refuse_changes(built):
    conn = built["conn"]
    # an old kept_from, so the later builds' reprocessing floor (the latest kept_from) stays as it was
    conn.execute("insert into audit.retention_runs (kept_from, policy, rows_deleted, files_deleted, bytes_freed) "
                 "values (date '2000-01-03', '{}', 0, 0, 0)")
    for statement in ("update audit.retention_runs set rows_deleted = 1",
                      "delete from audit.retention_runs", "truncate audit.retention_runs cascade"):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute(statement)


def _pseudonym_of_the_newest_referrals(conn) -> str:
    """A person referred in the newest week who has school rows too (contact rows if any has)."""
    return _one(conn, "select r.person_pseudonym from raw.referrals as r "
                      "join raw.school_absence as s using (person_pseudonym) "
                      "left join raw.contacts as c using (person_pseudonym) "
                      "where r.received_date >= (select date_trunc('week', max(received_date)) from raw.referrals) "
                      "order by (c.person_pseudonym is null) limit 1")


def test_an_erased_pseudonym_is_nowhere_and_the_marts_are_recounted(built, capsys, caplog, tmp_path):
    from ewi import retention, transform
    from ewi.ingest import ingest_files

    conn, home = built["conn"], config.ewi_home()
    pseudonym = _pseudonym_of_the_newest_referrals(conn)
    # held back by the gate too: a quarantined correction that holds the person's row, and its file
    newest = max(f for f in built["files"] if f.name.startswith("referrals_"))
    bad = _bad_correction(newest, tmp_path, "2358", sparing=pseudonym, year="1901")  # not the fixture's file
    assert [r.status for r in ingest_files([bad], docs_index=False)] == ["quarantined"]
    shutil.copy2(bad, config.landing_dir() / "processed" / "quarantined" / bad.name)
    assert _one(conn, "select count(*) from quarantine.referrals where person_pseudonym = %s", pseudonym) == 1
    # a file of another kind that holds it: deleted whole (a CSV loses the person's lines)
    other = home / "gx" / "validation_results" / "retention-test" / "holds.json"
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_text(json.dumps({"value": pseudonym}))
    delivered = [p for p in (config.landing_dir() / "processed" / "published").iterdir()
                 if pseudonym.encode() in p.read_bytes()]
    assert delivered
    lines_before = {p: len(p.read_bytes().splitlines()) for p in delivered}
    published_weeks = _published_weeks(conn)

    summary = retention.erase(pseudonym, erased_by="dpo-test", reference="CASE-17/1")
    assert summary["rebuild"] == "published" and summary["rows"] > 0 and summary["files"] > len(delivered)

    # nowhere: a dump of the warehouse database, every file under EWI_HOME outside the data directory
    import pgserver

    pg_dump = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"
    dump = subprocess.run([str(pg_dump), "--dbname", warehouse.dsn()], capture_output=True, check=True).stdout
    assert len(dump) > 1_000_000 and pseudonym.encode() not in dump and pseudonym.upper().encode() not in dump
    pgdata = home / "warehouse"
    for path in home.rglob("*"):
        if path.is_file() and pgdata not in path.parents:
            assert pseudonym.encode() not in path.read_bytes(), path.relative_to(home)
    # ... nor the database's own table files (vacuumed and checkpointed); WAL is not searched
    oid = _one(conn, "select oid from pg_database where datname = current_database()")
    for path in (pgdata / "base" / str(oid)).iterdir():
        assert pseudonym.encode() not in path.read_bytes(), "an erased row is still in a table file"
    assert not other.exists()
    assert _one(conn, "select count(*) from quarantine.referrals") > 0  # the batch, without the person
    for path, n in lines_before.items():
        assert len(path.read_bytes().splitlines()) < n
    # and never printed, logged or recorded; the audit has who, a reference and counts
    printed = capsys.readouterr()
    assert pseudonym not in printed.out + printed.err + caplog.text
    row = conn.execute("select erased_by, reference, rows_deleted, rebuild from audit.erasures "
                       "where id = %s", (summary["erasure"],)).fetchone()
    assert row == ("dpo-test", "CASE-17/1", summary["rows"], "deferred")
    assert _one(conn, "select count(*) from audit.deletions where erasure = %s", summary["erasure"]) > 0

    # the incremental rebuild recounted the person's weeks: what a full refresh computes
    assert _published_weeks(conn) == published_weeks
    counts = _area_counts(conn)
    full = transform.build(full_refresh=True)
    assert full["success"], full["failures"]
    assert _area_counts(conn) == counts


def test_erase_refuses_a_value_that_is_not_a_pseudonym_without_repeating_it(built, capsys):
    from ewi import cli

    value = "19121212-1212 Tolvan Tolvansson"
    assert cli.main(["erase", "--pseudonym", value, "--json", "--no-rebuild"]) == 2
    out = capsys.readouterr()
    assert value not in out.out + out.err and "Tolvan" not in out.out + out.err
    assert json.loads(out.out.splitlines()[-1])["code"] == "usage"
