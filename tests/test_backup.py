"""`ewi backup DIR` and `ewi restore DIR` (issue 17) on a warehouse built by the real pipeline
(synthetic extracts, ingest with a quarantined delivery, a dbt build): a round trip into a fresh
warehouse gives the same `published` and `audit` tables, checksum by checksum, and an audit chain
that still verifies; a warehouse holding data is refused without --force, and a damaged backup is
refused whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import pytest

from ewi import backup, cli, config, warehouse
from ewi.errors import EXIT_OK, EXIT_USAGE
from tests import extracts

WAREHOUSE_DB = "ewi_backup_source"
RESTORED_DB = "ewi_backup_restored"


def _checksums(database: str) -> dict:
    with psycopg.connect(warehouse.dsn(database), autocommit=True) as conn:
        return backup.table_checksums(conn)


@pytest.fixture(scope="module")
def built(module_warehouse, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("backup-extracts")
    files = [extracts.write(folder, source, week) for source in ("school_absence", "referrals", "contacts")
             for week in ("2024-W14", "2024-W15", "2024-W16")]
    bad = extracts.rows_for("contacts", "2024-W17")
    bad[0]["home_area_code"] = "2081C9999"
    files.append(extracts.write(folder, "contacts", "2024-W17", rows=bad))
    assert cli.main(["ingest", *map(str, files)]) == 3  # one quarantined
    assert cli.main(["transform"]) == EXIT_OK
    lineage = config.ewi_home() / "lineage"
    lineage.mkdir(parents=True, exist_ok=True)
    (lineage / "events.jsonl").write_text('{"eventType": "COMPLETE"}\n', encoding="utf-8")
    return module_warehouse


@pytest.fixture(scope="module")
def backed_up(built, tmp_path_factory):
    target = tmp_path_factory.mktemp("backup") / "b"
    manifest = backup.backup(target)
    return target, manifest


def test_a_backup_holds_the_dump_the_home_state_and_a_manifest_of_checksums(backed_up):
    target, manifest = backed_up
    assert json.loads((target / "manifest.json").read_text()) == manifest
    files = manifest["files"]
    assert {"warehouse.dump", "home/audit/chain.key", "home/lineage/events.jsonl"} <= set(files)
    assert any(name.startswith("home/gx/") for name in files)
    tables = manifest["tables"]
    assert tables["published.area_weekly_indicators"]["rows"] > 0
    assert tables["audit.batches"]["rows"] == 10 and tables["audit.chain"]["rows"] > 0
    assert manifest["audit_chain"]["holds"] is True
    dump = subprocess.run([str(warehouse.pg_bin_dir() / "pg_restore"), "--list", str(target / "warehouse.dump")],
                          capture_output=True, text=True, check=True)
    assert "TABLE DATA raw referrals" in dump.stdout


def test_a_round_trip_gives_identical_published_and_audit_tables_and_the_chain_verifies(backed_up):
    target, manifest = backed_up
    source = _checksums(WAREHOUSE_DB)
    env = {**os.environ, "EWI_WAREHOUSE_DB": RESTORED_DB}
    env.pop("PGOPTIONS", None)
    done = subprocess.run([sys.executable, "-m", "ewi.cli", "restore", str(target), "--json"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["chain_holds"] is True and summary["tables_checked"] == len(manifest["tables"])
    restored = _checksums(RESTORED_DB)
    for table in manifest["tables"]:
        if table != "audit.chain_verifications" and table != "audit.chain":
            assert restored[table] == source[table], table
    verified = subprocess.run([sys.executable, "-m", "ewi.cli", "audit", "verify"], env=env,
                              capture_output=True, text=True, timeout=300)
    assert verified.returncode == EXIT_OK, verified.stdout + verified.stderr


def test_a_warehouse_holding_data_is_refused_unless_forced(backed_up, capsys):
    target, _ = backed_up
    os.environ["EWI_WAREHOUSE_DB"] = RESTORED_DB  # restored by the test before, or restored now
    try:
        with psycopg.connect(warehouse.dsn(RESTORED_DB), autocommit=True) as conn:
            restored_before = bool(backup._holds_data(conn))
        if not restored_before:
            backup.restore(target)
        code = cli.main(["restore", str(target), "--json"])
        answer = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert code == EXIT_USAGE and "already holds data" in answer["reason"] and "--force" in answer["reason"]
        with psycopg.connect(warehouse.dsn(RESTORED_DB), autocommit=True) as conn:
            conn.execute("insert into audit.pipeline_events (dag_id, event) values ('after', 'the backup')")
        assert cli.main(["restore", str(target), "--force"]) == EXIT_OK
        with psycopg.connect(warehouse.dsn(RESTORED_DB), autocommit=True) as conn:
            assert conn.execute("select count(*) from audit.pipeline_events where dag_id = 'after'").fetchone()[0] == 0
    finally:
        os.environ["EWI_WAREHOUSE_DB"] = WAREHOUSE_DB


def test_a_damaged_backup_is_refused_whole(backed_up, tmp_path, capsys):
    target, _ = backed_up
    import shutil

    copy = tmp_path / "damaged"
    shutil.copytree(target, copy)
    dump = copy / "warehouse.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    before = _checksums(WAREHOUSE_DB)
    code = cli.main(["restore", str(copy), "--force", "--json"])
    answer = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert code == EXIT_USAGE and "warehouse.dump" in answer["reason"] and "nothing was restored" in answer["reason"]
    assert _checksums(WAREHOUSE_DB) == before


def test_a_backup_goes_into_a_new_or_empty_folder(built, tmp_path, capsys):
    (tmp_path / "old.txt").write_text("x")
    assert cli.main(["backup", str(tmp_path), "--json"]) == EXIT_USAGE
    assert "not an empty folder" in json.loads(capsys.readouterr().out.splitlines()[-1])["reason"]


def test_a_restore_on_a_new_installation_brings_the_chain_key_and_the_home_state(backed_up, tmp_path):
    """A new EWI_HOME (its own embedded server, no key of its own yet): the restored chain verifies
    with the key the backup carried, and the users file and lineage events are back."""
    target, manifest = backed_up
    env = {k: v for k, v in os.environ.items() if k not in ("PGOPTIONS", "EWI_WAREHOUSE_DB", "EWI_DASHBOARD_USERS")}
    env["EWI_HOME"] = str(tmp_path / "new-home")
    try:
        done = subprocess.run([sys.executable, "-m", "ewi.cli", "restore", str(target), "--json"], env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == EXIT_OK, done.stdout + done.stderr
        assert json.loads(done.stdout.splitlines()[-1])["chain_holds"] is True
        home = tmp_path / "new-home"
        assert (home / "audit" / "chain.key").read_bytes() == (target / "home" / "audit" / "chain.key").read_bytes()
        assert (home / "lineage" / "events.jsonl").is_file()
        verified = subprocess.run([sys.executable, "-m", "ewi.cli", "audit", "verify"], env=env,
                                  capture_output=True, text=True, timeout=300)
        assert verified.returncode == EXIT_OK, verified.stdout + verified.stderr
    finally:
        subprocess.run([sys.executable, "-m", "ewi.cli", "warehouse", "stop"], env=env, capture_output=True,
                       timeout=120)
