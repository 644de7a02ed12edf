"""The audit trail's hash chain (issue 17, migration 0019) on a warehouse the real ingest wrote:
every audit table is chained, the chain holds after real work, and a row edited, deleted or inserted
by SQL (by the warehouse owner, with and without the trigger) is found and named; two processes
appending at once keep one consistent chain; `ewi audit verify` exits 3 and records each run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from ewi import audit_chain, config, locks, warehouse
from tests import extracts

WAREHOUSE_DB = "ewi_audit_chain"
NO_KEY = "-c ewi.chain_key="  # a session as another client opens it: without EWI's key


@pytest.fixture(scope="module")
def ingested(module_warehouse, tmp_path_factory) -> str:
    """The module's warehouse after real deliveries: published, quarantined and rejected batches."""
    from ewi.ingest import ingest_files

    folder = tmp_path_factory.mktemp("audit-chain-extracts")
    files = [extracts.write(folder, "contacts", "2024-W10"), extracts.write(folder, "referrals", "2024-W10")]
    bad = extracts.rows_for("contacts", "2024-W11")
    bad[0]["home_area_code"] = "2081C9999"  # not in the area register: quarantined
    files.append(extracts.write(folder, "contacts", "2024-W11", rows=bad))
    files.append(extracts.write(folder, "referrals", "2024-W11", content=b""))  # rejected
    ingest_files(files)
    return module_warehouse


@pytest.fixture
def clone(ingested, request):
    """A copy of the ingested warehouse for one test to tamper with; yields (dsn, owner connection)."""
    name = f"{WAREHOUSE_DB}_{request.node.name}"[:60].lower()
    name = re.sub(r"[^a-z0-9_]", "_", name)
    admin = psycopg.conninfo.make_conninfo(ingested, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}"')
        # a copy needs the original to itself (the ingest's GX engine may keep a pooled session)
        conn.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                     "where datname = %s and pid <> pg_backend_pid()", (WAREHOUSE_DB,))
        conn.execute(f'create database "{name}" template "{WAREHOUSE_DB}"')
    dsn = psycopg.conninfo.make_conninfo(ingested, dbname=name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield dsn, conn
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def outsider(dsn: str, bypass_trigger: bool = False) -> psycopg.Connection:
    """The warehouse owner from another client (psql, a script): no EWI key; optionally with the
    triggers off (session_replication_role = replica, which the owner of the embedded server may set)."""
    conn = psycopg.connect(dsn, autocommit=True, options=NO_KEY)
    if bypass_trigger:
        conn.execute("set session_replication_role = replica")
    return conn


def verify(dsn: str) -> audit_chain.Verification:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return audit_chain.verify(conn)


def test_every_audit_table_is_chained(ingested):
    """Whoever adds a table to schema audit (a migration of any number) gets it chained by `ewi
    warehouse init`; this fails for one that is not."""
    with psycopg.connect(ingested) as conn:
        tables = audit_chain.audit_tables(conn)
        chained = audit_chain.chained_tables(conn)
    assert {"audit.batches", "audit.check_results", "audit.access_log", "audit.signal_state_changes",
            "audit.dbt_runs", "audit.pipeline_events", "audit.chain_verifications"} <= set(tables)
    assert [t for t in tables if t not in chained] == []
    assert chained["audit.batches"] == ["batch_id"]


def test_a_table_added_to_schema_audit_is_chained_by_init_with_its_rows(clone):
    dsn, conn = clone
    conn.execute("create table audit.late_table (id int primary key, what text)")
    conn.execute("insert into audit.late_table values (1, 'before the chain')")
    assert verify(dsn).problems[0].kind == "not_chained"
    conn.execute("select audit.chain_all()")
    assert verify(dsn).holds
    conn.execute("insert into audit.late_table values (2, 'after')")
    assert verify(dsn).holds


def test_the_lock_number_in_the_migration_is_the_one_in_locks():
    sql = (config.PROJECT_ROOT / "ewi" / "migrations" / "0019_audit_chain.sql").read_text()
    assert set(re.findall(r"pg_advisory_xact_lock\((\d+)\)", sql)) == {str(locks.AUDIT_CHAIN)}
    assert audit_chain.LOCK_ID == locks.AUDIT_CHAIN


def test_the_chain_holds_after_real_deliveries(ingested):
    with psycopg.connect(ingested) as conn:
        statuses = {r[0] for r in conn.execute("select status from audit.batches")}
    assert {"published", "quarantined", "rejected"} <= statuses  # rows that were updated after insert
    result = verify(ingested)
    assert result.holds, result.problems
    assert result.links_checked > result.records_checked > 0


def test_a_row_edited_by_plain_sql_is_found_and_named(clone):
    dsn, conn = clone
    batch = conn.execute("select batch_id from audit.batches where status = 'quarantined'").fetchone()[0]
    with outsider(dsn) as sql:
        sql.execute("update audit.batches set status = 'published', reason = null where batch_id = %s", (batch,))
    result = verify(dsn)
    assert not result.holds
    first = result.problems[0]
    assert first.kind == "link_unsealed" and first.table == "audit.batches" and first.key == f"batch_id={batch}"
    assert batch in result.first_broken


def test_a_row_edited_with_the_trigger_bypassed_is_found_and_named(clone):
    dsn, conn = clone
    batch = conn.execute("select batch_id from audit.batches where status = 'rejected'").fetchone()[0]
    with outsider(dsn, bypass_trigger=True) as sql:
        sql.execute("update audit.batches set reason = 'looked fine' where batch_id = %s", (batch,))
    result = verify(dsn)
    assert [p.kind for p in result.problems] == ["row_changed"]
    assert result.problems[0].key == f"batch_id={batch}" and result.problems[0].seq is not None
    assert "changed" in result.first_broken and batch in result.first_broken


def test_a_row_deleted_is_found_and_named(clone):
    dsn, conn = clone
    batch = conn.execute("select batch_id from audit.batches where status = 'quarantined'").fetchone()[0]
    failed = conn.execute("select count(*) from audit.check_results where batch_id = %s and not success",
                          (batch,)).fetchone()[0]
    assert failed
    with outsider(dsn, bypass_trigger=True) as sql:  # hide the failed checks of a quarantined batch
        sql.execute("delete from audit.check_results where batch_id = %s and not success", (batch,))
    result = verify(dsn)
    assert {p.kind for p in result.problems} == {"row_deleted"} and result.problem_count == failed
    assert result.problems[0].table == "audit.check_results" and result.problems[0].key == f"batch_id={batch}"

    with psycopg.connect(dsn, autocommit=True, options=NO_KEY) as sql:  # the same with the trigger on
        sql.execute("delete from audit.batches where status = 'rejected' "
                    "and not exists (select 1 from audit.check_results c where c.batch_id = batches.batch_id)")
    kinds = {p.kind for p in verify(dsn).problems}
    assert "link_unsealed" in kinds


def test_a_row_inserted_is_found_and_named(clone):
    dsn, _ = clone
    with outsider(dsn, bypass_trigger=True) as sql:
        event = sql.execute("insert into audit.pipeline_events (dag_id, event) values ('ewi_ingest', 'retry') "
                            "returning event_id").fetchone()[0]
    result = verify(dsn)
    assert [(p.kind, p.table, p.key) for p in result.problems] == [
        ("row_inserted", "audit.pipeline_events", f"event_id={event}")]
    with outsider(dsn) as sql:  # with the trigger on but without the key: the link does not verify
        sql.execute("insert into audit.dbt_runs (run_id, started_at, finished_at, success, published, command, "
                    "elapsed_s, status) values ('forged', now(), now(), true, true, 'build', 1, 'success')")
    assert ("link_unsealed", "audit.dbt_runs", "run_id=forged") in [
        (p.kind, p.table, p.key) for p in verify(dsn).problems]


def test_a_chain_record_deleted_or_rewritten_is_found(clone):
    dsn, conn = clone
    with outsider(dsn) as sql:
        sql.execute("delete from audit.chain where seq = 5")
    first = verify(dsn).problems[0]
    assert first.kind == "link_missing" and first.seq == 6 and "#5" in first.words

    dsn2 = dsn
    with outsider(dsn2) as sql:  # put a forged record #5 back: its hash cannot be made without the key
        sql.execute("""insert into audit.chain select 5, table_name, op, row_key, row_digest, old_digest,
                       recorded_at, prev_hash, hash from audit.chain where seq = 4""")
    assert verify(dsn).problems[0].seq == 5


def test_verify_exits_3_naming_the_record_and_records_each_run(clone):
    dsn, conn = clone
    env = {**os.environ, "EWI_WAREHOUSE_DB": conn.info.dbname}
    env.pop("PGOPTIONS", None)
    ok = subprocess.run([sys.executable, "-m", "ewi.cli", "audit", "verify", "--json"], env=env,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    answer = json.loads(ok.stdout.splitlines()[-1])
    assert answer["status"] == "holds" and answer["records_checked"] > 0

    batch = conn.execute("select batch_id from audit.batches limit 1").fetchone()[0]
    with outsider(dsn, bypass_trigger=True) as sql:
        sql.execute("update audit.batches set rows_published = 0 where batch_id = %s", (batch,))
    broken = subprocess.run([sys.executable, "-m", "ewi.cli", "audit", "verify"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert broken.returncode == 3
    assert batch in broken.stdout and "changed" in broken.stdout

    runs = conn.execute("select holds, records_checked, first_broken from audit.chain_verifications "
                        "order by id").fetchall()
    assert [r[0] for r in runs] == [True, False]
    assert runs[0][1] == answer["records_checked"] and batch in runs[1][2]


def test_two_processes_appending_at_once_keep_one_chain(clone):
    """Two real processes, each appending audit rows in many small transactions at the same time
    (as two ingests and the dashboard's access log do): the links stay numbered and joined."""
    dsn, conn = clone
    before = conn.execute("select count(*) from audit.chain").fetchone()[0]
    script = (
        "import sys, psycopg\n"
        "from ewi import warehouse\n"
        "warehouse.arm_audit_chain_key()\n"
        "with psycopg.connect(sys.argv[1]) as conn:\n"
        "    for i in range(150):\n"
        "        with conn.transaction():\n"
        "            conn.execute(\"insert into audit.pipeline_events (dag_id, event) values (%s, 'x')\", (sys.argv[2],))\n"
        "            conn.execute(\"select audit.record_access(%s, 'auditor', 'view', true, '/audit', '{}')\", (sys.argv[2],))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(config.PROJECT_ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script, dsn, name], env=env) for name in ("one", "two")]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    result = verify(dsn)
    assert result.holds, result.problems
    assert result.links_checked == before + 600
    switches = conn.execute(
        """select count(*) from (select username, lag(username) over (order by id) as prev
           from audit.access_log where username in ('one', 'two')) as s where username <> prev""").fetchone()[0]
    assert switches > 1  # the two really wrote at the same time


def test_the_key_never_enters_the_database(clone):
    dsn, conn = clone
    key = warehouse.audit_chain_key()
    dump = subprocess.run([str(Path(warehouse.pg_bin_dir()) / "pg_dump"), dsn], capture_output=True,
                          text=True, timeout=120, env={k: v for k, v in os.environ.items() if k != "PGOPTIONS"})
    assert dump.returncode == 0 and "constraint trigger audit_chain" in dump.stdout.lower()
    assert key not in dump.stdout


def test_a_dropped_or_disabled_trigger_is_found_and_init_restores_it_without_a_new_start(clone):
    dsn, conn = clone
    batch = conn.execute("select batch_id from audit.batches where status = 'published' limit 1").fetchone()[0]
    conn.execute("alter table audit.batches disable trigger audit_chain")
    assert {p.kind for p in verify(dsn).problems} == {"not_chained"}
    conn.execute("alter table audit.batches enable trigger audit_chain")
    conn.execute("drop trigger audit_chain on audit.batches")
    with outsider(dsn) as sql:  # a change while nothing records it
        sql.execute("update audit.batches set rows_published = 1 where batch_id = %s", (batch,))
    assert "not_chained" in {p.kind for p in verify(dsn).problems}
    with psycopg.connect(dsn) as own:  # what `ewi warehouse init` does after the migrations
        assert audit_chain.ensure_chained(own) == 0  # no genesis: the chain knows the table
    result = verify(dsn)
    assert [(p.kind, p.key) for p in result.problems] == [("row_changed", f"batch_id={batch}")]


def test_two_ingests_at_once_keep_one_chain(clone, tmp_path):
    """Two real `ewi ingest` processes deciding deliveries at the same time (batches, check results
    and their updates from both), then the chain verifies."""
    dsn, conn = clone
    before = conn.execute("select count(*) from audit.batches").fetchone()[0]
    env = {**os.environ, "EWI_WAREHOUSE_DB": conn.info.dbname}
    env.pop("PGOPTIONS", None)
    procs = []
    for source in ("contacts", "referrals"):
        files = [str(extracts.write(tmp_path / source, source, week)) for week in ("2024-W20", "2024-W21")]
        procs.append(subprocess.Popen([sys.executable, "-m", "ewi.cli", "ingest", *files], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    assert [p.wait(timeout=300) for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    assert conn.execute("select count(*) from audit.batches").fetchone()[0] == before + 4
    result = verify(dsn)
    assert result.holds, [p.words for p in result.problems]


def test_verifying_with_another_installations_key_says_so(clone):
    dsn, _ = clone
    with psycopg.connect(dsn, autocommit=True) as conn:
        result = audit_chain.verify(conn, key="not-the-key")
    assert result.problems[0].kind == "wrong_key" and "not the key" in result.first_broken


def test_a_broken_chain_is_told_to_the_data_engineers_by_record_never_by_content(clone, monkeypatch):
    """What the nightly ewi_audit_verify DAG sends (people_notices.verify_audit_chain)."""
    from ewi.orchestration import people_notices

    dsn, conn = clone
    batch = conn.execute("select batch_id from audit.batches where status = 'quarantined'").fetchone()[0]
    reason = conn.execute("select reason from audit.batches where batch_id = %s", (batch,)).fetchone()[0]
    assert people_notices.chain_message(verify(dsn)) is None
    with outsider(dsn, bypass_trigger=True) as sql:
        sql.execute("update audit.batches set reason = 'fine' where batch_id = %s", (batch,))
    message = people_notices.chain_message(verify(dsn), "https://ewi.example.org")
    assert message.audience == "engineer" and "broken" in message.subject
    assert batch in message.text and "https://ewi.example.org/audit" in message.text
    assert reason not in message.text and "fine" not in message.text

    sent = []
    monkeypatch.setattr(people_notices, "send", lambda m, context=None: sent.append(m) or ["test"])
    monkeypatch.setenv("EWI_WAREHOUSE_DB", conn.info.dbname)
    outcome = people_notices.verify_audit_chain()
    assert outcome["holds"] is False and [m.subject for m in sent] == [message.subject]
    assert conn.execute("select holds from audit.chain_verifications order by id desc limit 1").fetchone()[0] is False
