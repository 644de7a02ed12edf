"""`ewi backup DIR` and `ewi restore DIR` (issue 17).

A backup is one folder:

    warehouse.dump      pg_dump's custom format of the warehouse database, taken in one snapshot
    home/...            what EWI_HOME holds that the warehouse does not: the dashboard's users, the
                        GX store (validation results and Data Docs), the lineage events, and the
                        audit chain's key (without it the restored chain cannot be verified)
    manifest.json       sha256 and size of every file above; rows and a checksum of every table of
                        `published` and `audit`, computed in the dump's own snapshot; the audit
                        chain's head and whether it held when the backup was taken

Restore checks the files against the manifest, refuses a warehouse that holds data unless
--force (it would be replaced), restores with pg_restore, compares every table's checksum with the
manifest, brings the schema up to this version's migrations and verifies the audit chain.
Stop the services that write (Airflow, the dashboard) before a restore: they would carry on with
the warehouse as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

from ewi import audit_chain, config, warehouse, warehouse_init
from ewi.dashboard import users
from ewi.errors import EwiError, UsageError

FORMAT = 1
CHECKED_SCHEMAS = ("published", "audit")
#: schemas whose rows make a warehouse "hold data"; ref (the area register) and ewi_meta (the
#: migrations) are what `ewi warehouse init` writes into an empty one
DATA_SCHEMAS = ("audit", "raw", "pending", "quarantine", "published", "signals", "intermediate")


class RestoreMismatch(EwiError):
    code = "restore_mismatch"
    default_reason = "the restored warehouse differs from the backup"


def _home_parts() -> dict[str, Path]:
    """What of EWI_HOME a backup carries, by its name in the backup."""
    home = config.ewi_home()
    return {
        "home/dashboard/users.json": users.users_file(),
        "home/gx": home / "gx",
        "home/lineage": home / "lineage",
        "home/audit/chain.key": warehouse.audit_chain_key_file(),
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tool(name: str) -> str:
    path = warehouse.pg_bin_dir() / name
    if not path.exists():
        raise UsageError(f"{name} was not found in {path.parent}; set EWI_PG_BIN_DIR to the folder of "
                         f"the {name} that matches the warehouse server's major version")
    return str(path)


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        # pg_dump's and pg_restore's messages may quote object names and rows: kept to the exit code
        raise EwiError(f"{what} failed (exit {done.returncode}); nothing was changed by the backup")


def table_checksums(conn: psycopg.Connection) -> dict[str, dict]:
    """Rows and sha256 over the sorted text of the rows, of every table of `published` and `audit`."""
    conn.execute("set timezone = 'UTC'")
    conn.execute("set datestyle = 'ISO, YMD'")
    conn.execute("set intervalstyle = 'postgres'")
    conn.execute("set extra_float_digits = 3")
    tables = conn.execute(
        """select n.nspname, c.relname from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
           where n.nspname = any(%s) and c.relkind in ('r', 'p') and not c.relispartition
           order by 1, 2""", (list(CHECKED_SCHEMAS),)).fetchall()
    out = {}
    for schema, name in tables:
        rows, digest = conn.execute(sql.SQL(
            """select count(*), encode(sha256(convert_to(coalesce(string_agg(x, E'\\n' order by x), ''),
                                                        'UTF8')), 'hex')
               from (select t::text as x from {} as t) as r""").format(sql.Identifier(schema, name))).fetchone()
        out[f"{schema}.{name}"] = {"rows": rows, "sha256": digest}
    return out


def backup(target: Path) -> dict:
    """Write a backup of the warehouse and EWI_HOME's state into `target` (a new or empty folder)."""
    started = time.perf_counter()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target} is not an empty folder; a backup goes into a new or empty one")
    target.mkdir(parents=True, exist_ok=True)
    warehouse_init.init_warehouse()
    dsn = warehouse.dsn()
    manifest: dict = {"format": FORMAT, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                      "database": conninfo.conninfo_to_dict(dsn).get("dbname"), "files": {}}
    with psycopg.connect(dsn, autocommit=True) as conn:
        manifest["server_version"] = conn.info.server_version
        # one snapshot for the dump, the checksums and the chain's verification: what the manifest
        # says is exactly what the dump holds, whatever commits meanwhile
        conn.execute("begin isolation level repeatable read, read only")
        snapshot = conn.execute("select pg_export_snapshot()").fetchone()[0]
        _run([_tool("pg_dump"), "--format=custom", f"--snapshot={snapshot}", "--file",
              str(target / "warehouse.dump"), "--dbname", dsn], "pg_dump")
        manifest["tables"] = table_checksums(conn)
        conn.execute("commit")
        chain = audit_chain.verify(conn)
    manifest["audit_chain"] = {"holds": chain.holds, "head_seq": chain.head_seq,
                               "head_hash": (chain.head_hash or "")[:16] or None}
    for name, source in _home_parts().items():
        if not source.exists():
            continue
        dest = target / name
        if source.is_dir():
            shutil.copytree(source, dest)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
    os.chmod(target, 0o700)  # pseudonymous data and the chain's key: the owner only
    for path in sorted(p for p in target.rglob("*") if p.is_file()):
        rel = path.relative_to(target).as_posix()
        manifest["files"][rel] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
    manifest["seconds"] = round(time.perf_counter() - started, 2)
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def _read_manifest(source: Path) -> dict:
    path = source / "manifest.json"
    if not path.is_file():
        raise UsageError(f"{source} holds no manifest.json: it is not a backup made by `ewi backup`")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    bad = [rel for rel, entry in manifest["files"].items()
           if not (source / rel).is_file() or _sha256(source / rel) != entry["sha256"]]
    if bad:
        raise UsageError(f"{len(bad)} files of the backup in {source} are missing or differ from its manifest "
                         f"(first: {bad[0]}); nothing was restored")
    return manifest


def _holds_data(conn: psycopg.Connection) -> list[str]:
    """The tables of the data schemas that hold rows (an empty or just-initialised warehouse has none)."""
    tables = conn.execute(
        """select n.nspname, c.relname from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
           where n.nspname = any(%s) and c.relkind = 'r' order by 1, 2""", (list(DATA_SCHEMAS),)).fetchall()
    return [f"{s}.{t}" for s, t in tables
            if conn.execute(sql.SQL("select exists (select 1 from {})").format(sql.Identifier(s, t))).fetchone()[0]]


def _recreate_database(dsn: str) -> None:
    name = conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(conninfo.make_conninfo(dsn, dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))


def restore(source: Path, force: bool = False) -> dict:
    """Restore the backup in `source` into the warehouse EWI_HOME or the DSN names."""
    started = time.perf_counter()
    manifest = _read_manifest(source)
    dsn = warehouse.dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        holding = _holds_data(conn)
    if holding and not force:
        raise UsageError(f"the warehouse already holds data ({len(holding)} tables with rows, e.g. {holding[0]}); "
                         "restore into an empty warehouse, or add --force to replace it with the backup")
    _recreate_database(dsn)
    # the login roles are the server's, not the database's: a new server needs them for the grants
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("""do $$ begin
            if not exists (select 1 from pg_roles where rolname = 'ewi_dashboard') then create role ewi_dashboard login; end if;
            if not exists (select 1 from pg_roles where rolname = 'ewi_auditor') then create role ewi_auditor login; end if;
            end $$""")
    # Not --exit-on-error: a grant or default privilege naming a role this server lacks (a backup of
    # the embedded server, owned by postgres, restored into compose's, owned by ewi) is reported and
    # skipped; what matters is checked below, table by table, against the manifest.
    done = subprocess.run([_tool("pg_restore"), "--no-owner", "--jobs=2", "--dbname", dsn,
                           str(source / "warehouse.dump")], capture_output=True, text=True)
    restore_errors = done.stderr.count("pg_restore: error:") if done.returncode else 0
    for name, dest in _home_parts().items():
        copy = source / name
        if not copy.exists():
            continue
        if copy.is_dir():
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(copy, dest)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(copy, dest)
    with psycopg.connect(dsn, autocommit=True) as conn:
        restored = table_checksums(conn)
    differing = sorted(t for t in manifest["tables"] if restored.get(t) != manifest["tables"][t])
    if differing:
        raise RestoreMismatch(f"{len(differing)} restored tables differ from the backup's checksums "
                              f"(first: {differing[0]})")
    warehouse.arm_audit_chain_key()  # the backup's key, now in EWI_HOME
    applied = warehouse_init.init_warehouse()
    chain = audit_chain.verify_warehouse()
    return {"status": "restored", "tables_checked": len(restored), "migrations_applied": applied,
            "pg_restore_errors_skipped": restore_errors,
            "chain_holds": chain.holds, "first_broken": chain.first_broken,
            "backup_created_at": manifest["created_at"], "seconds": round(time.perf_counter() - started, 2)}
