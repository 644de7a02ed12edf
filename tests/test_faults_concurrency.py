"""Fault injection (issue 14): deliveries and builds that run at the same time, as real `ewi`
processes against the real warehouse.

The interleavings are forced, not slept for: the test's own connections hold a table or row lock
that every ingest meets at a known step, wait (bounded) until each process is blocked on a lock or
has ended, and release the locks in the order that once went wrong:
- every ingest writes its audit's check results (audit.check_results) just before deciding, so a
  lock on that table holds each delivery between its read (with the stale check) and its decision;
- a publish replaces the period's published batch under a row lock on that batch's audit record,
  so a lock on that record holds the publish inside its transaction.
Each test then checks the contract's end state: one published batch for the source and period, the
latest delivery's rows exactly, nothing pending or left over, and (with a build) published marts
equal to a clean build of the same inputs.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

import ewi
from tests import extracts
from tests.test_incremental import COMPARED, _snapshot

pytestmark = pytest.mark.slow

EWI = os.path.join(os.path.dirname(sys.executable), "ewi")
#: Upper bound of every wait for a process to reach a lock or to end (a dbt build included).
WAIT_S = 240
ORIGINAL_AT, CORRECTION_AT = datetime(2030, 1, 1, 6, 0), datetime(2030, 1, 2, 6, 0)


WAREHOUSE_DB = "ewi_concurrency_tests"


@pytest.fixture(scope="module")
def dsn(module_warehouse):
    return module_warehouse


@pytest.fixture
def conn(dsn):
    with psycopg.connect(dsn, autocommit=True) as c:
        yield c


class Process:
    """One `ewi` command in a process of its own, named in pg_stat_activity by PGAPPNAME so the
    test can see which lock it waits for. It runs the code under test (this tree's `ewi`)."""

    def __init__(self, name: str, out_dir: Path, *args: str):
        self.name = name
        self.out, self.err = out_dir / f"{name}.out", out_dir / f"{name}.err"
        tree = str(Path(ewi.__file__).resolve().parents[1])
        env = {**os.environ, "PGAPPNAME": name,
               "PYTHONPATH": os.pathsep.join(p for p in (tree, os.environ.get("PYTHONPATH")) if p)}
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.popen = subprocess.Popen([EWI, *args], stdout=out, stderr=err, env=env)

    def ended(self) -> bool:
        return self.popen.poll() is not None

    def finish(self) -> list[dict]:
        """Wait for the process to end; its JSON answer lines."""
        try:
            self.popen.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"{self.name} did not end within {WAIT_S} s") from None
        assert self.popen.returncode in (0, 3), f"{self.name} failed: {self.err.read_text()[-2000:]}"
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.startswith("{")]


def wait_until(what: str, condition) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def waits_on_lock(conn, process: Process, locktype: str | None = None) -> bool:
    """Whether a connection of the process waits for a lock (of `locktype`, e.g. 'advisory')."""
    return conn.execute(
        """select exists (select 1 from pg_stat_activity as a join pg_locks as l on l.pid = a.pid
                          where a.application_name = %s and not l.granted
                            and (%s::text is null or l.locktype = %s))""",
        (process.name, locktype, locktype)).fetchone()[0]


def blocked_or_ended(conn, process: Process) -> None:
    wait_until(f"{process.name} waits for a lock or has ended",
               lambda: process.ended() or waits_on_lock(conn, process))


def pending_batch(conn, path: Path) -> str | None:
    row = conn.execute("select batch_id from audit.batches where file_name = %s and status = 'pending'",
                       (path.name,)).fetchone()
    return row[0] if row else None


def file_rows(path: Path, columns: list[str]) -> list[tuple]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return sorted(tuple(r[c] for c in columns) for r in csv.DictReader(fh))


def assert_contract_end_state(conn, source: str, period: str, latest: Path) -> None:
    """One published batch for the source and period, and it is the latest delivery's; the raw
    table holds that file's rows exactly; no batch pending; no pending table, quarantined row or
    detached partition left by any delivery of the period."""
    from ewi.sources import SOURCES

    batches = conn.execute("select batch_id, file_name, status from audit.batches where source = %s and period = %s",
                           (source, period)).fetchall()
    assert [f for _, f, s in batches if s == "published"] == [latest.name]
    assert not [s for *_, s in batches if s == "pending"]
    ids = [b for b, *_ in batches]
    columns = list(SOURCES[source].column_names)
    listed = ", ".join(f"{c}::text" for c in columns)
    raw = conn.execute(f"select {listed} from raw.{source} where batch_id = any(%s)", (ids,)).fetchall()  # noqa: S608
    assert sorted(raw) == file_rows(latest, columns), "the published rows are not the latest delivery's"
    left = conn.execute(
        "select count(*) from pg_tables where schemaname in ('pending', 'raw') and tablename = any(%s) "
        "and (schemaname = 'pending' or tablename not in (select c.relname from pg_inherits i "
        "join pg_class c on c.oid = i.inhrelid))",
        ([f"{source}_{b}" for b in ids],)).fetchone()[0]
    assert left == 0, "a delivery left a pending table or a detached partition"
    assert conn.execute(f"select count(*) from quarantine.{source} where batch_id = any(%s)",  # noqa: S608
                        (ids,)).fetchone()[0] == 0


def _original_and_correction(tmp_path: Path, source: str, period: str) -> tuple[Path, Path]:
    original = extracts.write(tmp_path / "original", source, period, delivered=ORIGINAL_AT)
    correction = extracts.write(tmp_path / "correction", source, period, delivered=CORRECTION_AT,
                                rows=extracts.rows_for(source, period, n=37))
    return original, correction


@pytest.mark.parametrize(("period", "first"), [("2025-W10", "correction"), ("2025-W11", "original")])
def test_an_original_and_its_correction_ingested_at_once_end_with_the_correction(conn, dsn, tmp_path, period, first):
    """Issue 14, item 1. Both deliveries are read (and pass the stale check) before either is
    decided; the correction is let through to its decision first and the original after it, so
    the original, with the earlier delivery timestamp, decides last. It must not supersede the
    correction, whichever of the two started first."""
    original, correction = _original_and_correction(tmp_path, "referrals", period)
    started = {"correction": correction, "original": original}
    order = [first, "original" if first == "correction" else "correction"]
    procs: dict[str, Process] = {}
    with psycopg.connect(dsn) as gate:
        gate.execute("lock table audit.check_results in exclusive mode")
        for name in order:
            procs[name] = Process(f"ewi-test-{name}-{period}", tmp_path, "ingest", "--json", str(started[name]))
            blocked_or_ended(conn, procs[name])
        with psycopg.connect(dsn) as hold:
            held = pending_batch(conn, original)
            if held:  # the original was read; keep it from deciding until the correction has
                hold.execute("select 1 from audit.batches where batch_id = %s for update", (held,))
            gate.commit()
            wait_until("the correction is decided, or waits for the original's decision",
                       lambda: procs["correction"].ended() or waits_on_lock(conn, procs["correction"], "advisory"))
            hold.commit()
    [orig] = procs["original"].finish()
    [corr] = procs["correction"].finish()

    assert corr["status"] == "published"
    if first == "correction":
        # read before the correction was published, decided after: too late either way
        assert (orig["status"], orig["reason"].split(":")[0]) == ("rejected", "stale")
    else:
        assert orig["status"] == "published"
        assert conn.execute("select status, superseded_by from audit.batches where batch_id = %s",
                            (orig["batch_id"],)).fetchone() == ("superseded", corr["batch_id"])
    assert_contract_end_state(conn, "referrals", period, correction)


def test_the_same_file_ingested_twice_at_once_is_one_result_and_one_duplicate(conn, dsn, tmp_path):
    """Issue 14, item 1: the second ingest of a file that the first has not decided yet. It used to
    take over the first one's pending batch (and crash with UndefinedTable, or publish it twice)."""
    period = "2025-W12"
    path = extracts.write(tmp_path, "school_absence", period, delivered=ORIGINAL_AT)
    procs = []
    with psycopg.connect(dsn) as gate:
        gate.execute("lock table audit.check_results in exclusive mode")
        for n in (1, 2):
            procs.append(Process(f"ewi-test-same-file-{n}", tmp_path, "ingest", "--json", str(path)))
            blocked_or_ended(conn, procs[-1])
    [first], [second] = (p.finish() for p in procs)

    assert sorted([first["status"], second["status"]]) == ["duplicate", "published"]
    published, duplicate = sorted([first, second], key=lambda r: r["status"] != "published")
    assert duplicate["reason"] == f"duplicate: same sha256 as batch {published['batch_id']} (published)"
    assert conn.execute("select status, duplicate_of from audit.batches where batch_id = %s",
                        (duplicate["batch_id"],)).fetchone() == ("duplicate", published["batch_id"])
    assert_contract_end_state(conn, "school_absence", period, path)


def test_a_correction_undone_by_a_late_original_is_taken_again_when_delivered_again(conn, tmp_path, monkeypatch):
    """What the race of item 1 left behind before decisions were ordered: the original published
    after its correction, superseding it (made here by ingesting the original with the stale check
    switched off, as the race had it). The correction delivered again must repair that, not be
    answered `duplicate`; delivered a third time, it is a duplicate of the repair."""
    from ewi import ingest
    from ewi.ingest import publish

    period = "2025-W13"
    original, correction = _original_and_correction(tmp_path, "contacts", period)
    [first] = ingest.ingest_files([correction], docs_index=False)
    with monkeypatch.context() as patched:
        patched.setattr(publish, "later_delivery_published", lambda *args: False)
        [late] = ingest.ingest_files([original], docs_index=False)
    assert (first.status, late.status) == ("published", "published")
    assert conn.execute("select superseded_by from audit.batches where batch_id = %s",
                        (first.batch_id,)).fetchone()[0] == late.batch_id

    [again] = ingest.ingest_files([correction], docs_index=False)
    assert again.status == "published"
    assert conn.execute("select status, superseded_by from audit.batches where batch_id = %s",
                        (late.batch_id,)).fetchone() == ("superseded", again.batch_id)
    assert_contract_end_state(conn, "contacts", period, correction)
    [third] = ingest.ingest_files([correction], docs_index=False)
    assert (third.status, third.reason) == ("duplicate", f"duplicate: same sha256 as batch {again.batch_id} (published)")


@pytest.fixture(scope="module")
def built_weeks(dsn, tmp_path_factory):
    """Five synthetic weeks of every source, ingested and built once (a first build: full)."""
    from ewi import synth, transform
    from ewi.ingest import ingest_files

    out = tmp_path_factory.mktemp("synth-weeks")
    synth.generate(out, weeks=5, end_week="2026-W14", seed=7)
    results = ingest_files(sorted(out.glob("*.csv")), docs_index=False)
    assert {r.status for r in results} == {"published"}
    assert transform.build()["success"]
    return out


def _corrected_school_week(synth_dir: Path, out_dir: Path, period: str) -> Path:
    """The school week delivered again a day later: every third pupil's valid absence becomes their
    whole scheduled time, which changes that week's (and the next weeks') absence indicators."""
    [original] = synth_dir.glob(f"school_absence_{period}_*.csv")
    with open(original, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns, rows = reader.fieldnames, list(reader)
    for i, row in enumerate(rows):
        if i % 3 == 0:
            row["valid_absence_minutes"], row["invalid_absence_minutes"] = row["scheduled_minutes"], "0"
    return extracts.write(out_dir, "school_absence", period, rows=rows, columns=columns,
                          name=original.name[:-len("YYYYMMDDTHHMM.csv")] + "20260401T0600.csv")


def test_a_correction_that_commits_while_a_build_runs_is_in_the_published_marts(conn, dsn, tmp_path, built_weeks):
    """Issue 14, item 2. The correction's publish has begun (its transaction is open) and is held by
    a row lock while a build starts; another delivery is read but still being audited. Once released,
    the published marts, after this build and the next incremental one, must equal a full refresh of
    the same inputs, and load_status must show no `pending`: not the correction, decided before the
    build read it, nor the delivery under audit, decided moments after the build."""
    from ewi import transform

    period = "2026-W12"
    correction = _corrected_school_week(built_weeks, tmp_path, period)
    audited = extracts.write(tmp_path / "audited", "contacts", "2026-W15")
    [(published_batch,)] = conn.execute(
        "select batch_id from audit.batches where source = 'school_absence' and period = %s and status = 'published'",
        (period,)).fetchall()
    with psycopg.connect(dsn) as hold, psycopg.connect(dsn) as gate:
        # the publish locks the batch it replaces: it waits here, inside its transaction
        hold.execute("select 1 from audit.batches where batch_id = %s for update", (published_batch,))
        ingest = Process("ewi-test-correction-during-build", tmp_path, "ingest", "--json", str(correction))
        blocked_or_ended(conn, ingest)
        gate.execute("lock table audit.check_results in exclusive mode")
        auditing = Process("ewi-test-audited-during-build", tmp_path, "ingest", "--json", str(audited))
        wait_until("the other delivery is read and held before its decision",
                   lambda: auditing.ended() or (pending_batch(conn, audited) and waits_on_lock(conn, auditing)))
        build = Process("ewi-test-build", tmp_path, "transform", "--json")
        wait_until("the build has ended or waits for the publish",
                   lambda: build.ended() or waits_on_lock(conn, build, "advisory"))
        hold.commit()
        [corrected] = ingest.finish()
        [built] = build.finish()
        gate.commit()
    assert corrected["status"] == "published" and built["success"], built["failures"]
    assert auditing.finish()[0]["status"] == "published"
    statuses = dict(conn.execute("select source, gate_result from published.load_status").fetchall())
    # school: the correction, decided before the build read the gate; contacts: its latest decided
    # delivery (2026-W14, published), not the one that was still under audit
    assert statuses == {"school_absence": "published", "referrals": "published", "contacts": "published"}
    assert conn.execute("select last_delivery_period from published.load_status where source = 'contacts'"
                        ).fetchone()[0] == "2026-W14"

    assert transform.build()["success"]  # the next incremental build
    incremental = _snapshot(conn)
    assert transform.build(full_refresh=True)["success"]  # a clean build of the same inputs
    full = _snapshot(conn)
    for table in COMPARED:
        differing = len(set(incremental[table]) ^ set(full[table]))
        assert incremental[table] == full[table], f"{table}: {differing} rows differ from a full refresh"
    assert_contract_end_state(conn, "school_absence", period, correction)
