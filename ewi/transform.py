"""Run the dbt project (dbt_project/) and publish its marts write-audit-publish style.

dbt builds the marts into the schema `published_next` (dbt_project.yml, var marts_schema) and runs
every test of the build; only when all of them pass are the marts moved into `published` in one
transaction, so readers see either the previous build or the new one, never a half or a failed one.
Table privileges (dbt `grants`) travel with a table when it changes schema.

The Farrington detector (Python, ewi.alerts) runs beside the same dbt build, on a thread of its own
from the moment the series it reads is built; the model that reads its output waits for it
(_farrington_hook).

Each build and its test results are recorded in audit.dbt_runs / audit.dbt_test_results for the
auditors: as 'running' when it starts and closed when it ends, so a killed build or one the warehouse
dropped is recorded by the next command (ewi.build_runs). dbt's own log goes to $EWI_HOME/dbt/logs,
never to stdout (`ewi transform --json`).

What a build leaves out, because it checks code or files rather than the data being published:
dbt unit tests (they test the models' SQL on fixed rows; `unit_tests()` runs them, and the test suite
does, as dbt advises for development and CI) and, on an incremental build, the seeds when their
files have not changed since they were loaded and tested (each seed table carries the checksum it
was loaded from as its comment). Every data test runs on every build.

Why one module of this length: the steps above share one dbt invocation, one connection and the
build lock from start to publish; split across modules they would pass that state back and forth.
The pieces that stand alone already live elsewhere (ewi.build_runs, ewi.locks, ewi.disclosure).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

from ewi import build_runs, config, errors, locks, warehouse, warehouse_init

log = logging.getLogger(__name__)

STAGING_SCHEMA = "published_next"
PUBLISHED_SCHEMA = "published"
#: Database errors can quote a failing row; nothing shaped like a pseudonym leaves this module.
_PSEUDONYM_RE = re.compile(r"[0-9a-fA-F]{64}")
_FAILED = {"fail", "error", "runtime error"}


#: The model the Farrington task reads, and the one that reads its results. The task starts on its own
#: thread as soon as the first is built, so the EARS models and the trends go on beside it; the second
#: waits for it as it starts (see _farrington_hook).
FARRINGTON_INPUT = "model.ewi.alert_series"
FARRINGTON_READER = "model.ewi.area_alerts"
#: A seed table's comment: the checksum of the seed file and its configuration it was loaded from.
_SEED_MARK = "ewi seed checksum "


def _dbt_dirs() -> tuple[Path, Path]:
    base = config.ewi_home() / "dbt"
    return base / "target", base / "logs"


def _dbt_env() -> None:
    os.environ.update(warehouse.dbt_env())


def _invoke(args: list[str], manifest=None, callbacks=None, target_path: Path | None = None):
    """Run one dbt command in-process; its console output is switched off, its log file kept.
    With `manifest` (what `parse` returned) dbt skips parsing the project again; `callbacks` get
    every dbt event (dbtRunner's documented hook). `target_path` keeps a command's artifacts apart
    from the builds' (the lineage page reads theirs)."""
    from dbt.cli.main import dbtRunner

    target, logs = _dbt_dirs()
    target = target_path or target
    _dbt_env()
    project = str(config.DBT_PROJECT_DIR)
    res = dbtRunner(manifest=manifest, callbacks=callbacks or []).invoke(
        [
            *args,
            "--project-dir", project,
            "--profiles-dir", project,
            "--target-path", str(target),
            "--log-path", str(logs),
            "--log-level", "none",
            "--log-level-file", "info",
            "--no-use-colors",
        ]
    )
    if isinstance(res.exception, KeyboardInterrupt):
        # Ctrl-C or SIGTERM (ewi.errors.Terminated): dbt cancelled its queries and returned; the
        # build stops here instead of going on to publish and report a failed test
        raise res.exception
    return res


def _scrub(message: str | None) -> str | None:
    return _PSEUDONYM_RE.sub("<redacted>", message) if message else message


def _node_results(res) -> list[dict]:
    rows = []
    for r in getattr(res.result, "results", None) or []:
        node = r.node
        status = str(getattr(r.status, "value", r.status))
        rows.append(
            {
                "unique_id": node.unique_id,
                "name": node.name,
                "resource_type": str(getattr(node.resource_type, "value", node.resource_type)),
                "schema": getattr(node, "schema", None),
                "model": (getattr(node, "attached_node", None) or "").split(".")[-1] or None,
                "status": status,
                "failures": r.failures,
                "message": _scrub(r.message),
                "execution_time": r.execution_time,
            }
        )
    return rows


def _counts(nodes: list[dict]) -> dict[str, int]:
    counts = {"model": 0, "test": 0, "unit_test": 0, "seed": 0,
              "pass": 0, "warn": 0, "fail": 0, "error": 0, "skip": 0}
    for n in nodes:
        if n["resource_type"] in counts:
            counts[n["resource_type"]] += 1
        status = {"success": "pass", "skipped": "skip", "runtime error": "error", "no-op": "no_op"}.get(
            n["status"], n["status"])
        counts[status] = counts.get(status, 0) + 1
    return counts


def _resource_type(node) -> str:
    return str(getattr(node.resource_type, "value", node.resource_type))


def _seed_checksums(manifest) -> dict[str, tuple[tuple[str, str], str]]:
    """Per seed (unique id): its table (schema, name) and the checksum of its file and configuration
    (column types, ...)."""
    checksums = {}
    for uid, node in manifest.nodes.items():
        if _resource_type(node) == "seed":
            config = json.dumps(node.config.to_dict(), sort_keys=True, default=str)
            checksum = hashlib.sha256(f"{node.checksum.checksum}\n{config}".encode()).hexdigest()
            checksums[uid] = ((node.schema, node.alias), checksum)
    return checksums


def _seeds_unchanged(conn: psycopg.Connection, seeds: dict[str, tuple[tuple[str, str], str]]) -> bool:
    """Whether every seed table holds what its file says: it carries the file's checksum, written
    after a build that loaded the file and passed every test."""
    tables = [table for table, _ in seeds.values()]
    marks = {(schema, name): comment for schema, name, comment in conn.execute(
        """select n.nspname::text, c.relname::text, obj_description(c.oid, 'pg_class')
           from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
           where (n.nspname::text, c.relname::text) in (select * from unnest(%s::text[], %s::text[]))""",
        ([schema for schema, _ in tables], [name for _, name in tables])).fetchall()}
    return all(marks.get(table) == _SEED_MARK + checksum for table, checksum in seeds.values())


def _mark_seeds(conn: psycopg.Connection, seeds: dict[tuple[str, str], str]) -> None:
    for (schema, name), checksum in seeds.items():
        conn.execute(sql.SQL("comment on table {}.{} is {}").format(
            sql.Identifier(schema), sql.Identifier(name), sql.Literal(_SEED_MARK + checksum)))


def _seed_only_tests(manifest) -> list[str]:
    """The data tests that read seeds only: they test the seed files, so they go with the seeds."""
    seeds = {uid for uid, node in manifest.nodes.items() if _resource_type(node) == "seed"}
    return sorted(node.name for node in manifest.nodes.values()
                  if _resource_type(node) == "test" and node.depends_on.nodes
                  and set(node.depends_on.nodes) <= seeds)


def _farrington_hook(full: bool, outcome: dict):
    """A dbt event callback that runs the Farrington task beside the build.

    On dbt's NodeFinished event of FARRINGTON_INPUT the task starts on a thread of its own; on the
    NodeStart event of FARRINGTON_READER (fired on the worker thread that is about to build it) the
    callback waits for the task, so area_alerts reads this build's results. A failed task is recorded
    in `outcome` and fails the build (nothing is published); the callback does not raise, because an
    exception in a NodeStart callback escapes dbt's handling of the node. `outcome["thread"]` lets the
    caller wait for the task when the build ends before area_alerts starts."""
    def run() -> None:
        started = time.monotonic()
        try:
            from ewi.alerts import run_area_score, run_farrington, run_glrnb

            with warehouse.connect() as conn:
                run_farrington(conn, full=full)
                # the area score combines the Farrington results just written (ewi/alerts/area_score.py)
                run_area_score(conn)
                conn.commit()
                # the GLR runs on Farrington's expectations, so after it, on the same thread
                run_glrnb(conn)
                conn.commit()
        except Exception as exc:
            outcome["failure"] = {"node": "farrington", "message": _scrub(f"{type(exc).__name__}: {exc}")}
            log.error("the Farrington task failed: %s", outcome["failure"]["message"])
        finally:
            outcome["s"] = round(time.monotonic() - started, 2)

    def hook(event) -> None:
        name = event.info.name
        if name not in ("NodeFinished", "NodeStart"):
            return
        node = event.data.node_info.unique_id
        if name == "NodeFinished" and node == FARRINGTON_INPUT:
            if event.data.run_result.status in ("success", "pass"):
                outcome["thread"] = threading.Thread(target=run, name="farrington", daemon=True)
                outcome["thread"].start()
        elif name == "NodeStart" and node == FARRINGTON_READER and "thread" in outcome:
            outcome["thread"].join()

    return hook


def _reset_staging_schema(conn: psycopg.Connection) -> None:
    # Whatever is in published_next must come from this build: a failed build's leftovers must not
    # be published by the next one.
    conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(STAGING_SCHEMA)))
    conn.execute(sql.SQL("create schema {}").format(sql.Identifier(STAGING_SCHEMA)))
    conn.execute(sql.SQL("revoke all on schema {} from public").format(sql.Identifier(STAGING_SCHEMA)))


def _publish(conn: psycopg.Connection, tables: list[str], run_id: str) -> None:
    """Move the built marts into `published`, replacing the old ones, in one transaction, which also
    records the build as published (so a build killed right after still says so)."""
    with conn.transaction():
        conn.execute("update audit.dbt_runs set published = true where run_id = %s", (run_id,))
        for table in tables:
            conn.execute(
                sql.SQL("drop table if exists {}.{}").format(
                    sql.Identifier(PUBLISHED_SCHEMA), sql.Identifier(table)
                )
            )
            conn.execute(
                sql.SQL("alter table {}.{} set schema {}").format(
                    sql.Identifier(STAGING_SCHEMA), sql.Identifier(table), sql.Identifier(PUBLISHED_SCHEMA)
                )
            )
        if "area_signals" in tables:
            # a signal's state set while this build ran is in signals.signal_states, not in the new table
            conn.execute("select signals.apply_states()")


def build(select: str | None = None, full_refresh: bool = False) -> dict:
    """Seed, build and test the dbt project; publish the marts only if everything passed.

    `select` is a dbt selector; the marts it builds are published, so it must include the marts
    they read (e.g. "+area_trends"). A whole build after a failed one is a full refresh. Returns a
    JSON-able summary: success, status, counts (per resource type and status), failures
    [{node, message}], published, published_models, full_refresh (and why), elapsed_s, run_id.
    """
    started = time.monotonic()
    started_at = datetime.now(UTC)
    warehouse_init.init_warehouse()  # migrations (raw.published_at, audit.dbt_*) and the area register
    with warehouse.connect(autocommit=True) as lock:
        # Held to the end: one build at a time, and no gate decision commits while the build reads,
        # so a decision is either in this build or newer than its watermark (ewi.locks).
        locks.hold_build(lock)
        # recorded as running, held by this session: if the process dies, the session goes with it
        run = build_runs.start(lock, started_at)
        try:
            return _build_locked(select, full_refresh, started, run)
        except BaseException as exc:
            error = errors.classify(exc)
            try:
                build_runs.finish(None, {**run, "finished_at": datetime.now(UTC), "success": False,
                                         "counts": {}, "elapsed_s": round(time.monotonic() - started, 2),
                                         "reason": error.reason}, [])
            except Exception as record_error:  # the record stays 'running'; the next command marks it
                log.warning("build %s: its failure could not be recorded (%s)", run["run_id"],
                            type(record_error).__name__)
            if isinstance(exc, Exception) and not isinstance(error, errors.InternalError):
                error.details.setdefault("run_id", run["run_id"])
                raise error from exc
            raise


def _previous_build_failed(conn: psycopg.Connection) -> bool:
    # a killed build counts as failed: it may have written into the incremental models too
    row = conn.execute("select success from audit.dbt_runs where status <> 'running' "
                       "order by started_at desc limit 1").fetchone()
    return row is not None and not row[0]


def _build_locked(select: str | None, full_refresh: bool, started: float, run: dict) -> dict:
    full_refresh_reason = "asked" if full_refresh else None
    with warehouse.connect(autocommit=True) as conn:
        _reset_staging_schema(conn)
        # A failed build may have written rows into the incremental per-person models (a failing test
        # does not stop every model that reads the same data); an incremental build would count them
        # as done and no longer test them. So the build after a failed one recomputes everything.
        if not full_refresh and not select and _previous_build_failed(conn):
            full_refresh, full_refresh_reason = True, "the previous build failed"

    nodes, failures, success, res = [], [], True, None
    phase_seconds: list[dict] = []
    # Parsed once, then built with the parsed manifest (the seeds' checksums come from it too).
    parse_started = time.monotonic()
    parsed = _invoke(["parse"])
    phase_seconds.append({"phase": "parse", "s": round(time.monotonic() - parse_started, 2)})
    manifest = parsed.result if parsed.success else None
    if manifest is None:
        failures.append({"node": "dbt parse", "message": _scrub(str(parsed.exception or "parse failed"))})
        success = False

    seeds = _seed_checksums(manifest) if manifest is not None else {}
    reload_seeds = True
    if seeds and not full_refresh and not select:
        with warehouse.connect() as conn:
            reload_seeds = not _seeds_unchanged(conn, seeds)
    if reload_seeds and not full_refresh and not select and manifest is not None:
        # a changed area register (populations, names, areas) changes every week's published figures
        full_refresh, full_refresh_reason = True, "the seed files changed or were never loaded"
    left_out = ["--exclude-resource-type", "unit_test"]
    seed_tests: list[str] = []
    if not reload_seeds:
        left_out += ["--exclude-resource-type", "seed"]
        seed_tests = _seed_only_tests(manifest)
    # --no-write-json: the results are read from dbt's return value and recorded in audit.dbt_*;
    # writing the whole manifest again after each phase cost about 0.2 s a phase.
    base = ["build", "--no-write-json"] + (["--full-refresh"] if full_refresh else [])
    # One dbt invocation; a whole build runs the Farrington task beside it (_farrington_hook).
    farrington: dict = {}
    hooks = []
    if select:
        command = base + ["--select", select, *left_out]
    else:
        command = base + [*(["--exclude", *seed_tests] if seed_tests else []), *left_out]
        # reloaded seeds may hold a new area register: new populations for every week
        hooks = [_farrington_hook(full_refresh or reload_seeds, farrington)]
    run["command"] = " ".join(command)
    if success:
        build_started = time.monotonic()
        res = _invoke(command, manifest, callbacks=hooks)
        if "thread" in farrington:  # the build may end (a failure upstream of area_alerts) before it
            farrington["thread"].join()
        phase_seconds.append({"phase": " ".join(command), "s": round(time.monotonic() - build_started, 2)})
        nodes = _node_results(res)
        if "failure" in farrington:
            failures.append(farrington["failure"])
        failures += [{"node": n["unique_id"], "message": n["message"]} for n in nodes if n["status"] in _FAILED]
        if res.exception is not None:
            failures.append({"node": "dbt", "message": _scrub(str(res.exception))})
        success = bool(res.success) and not failures
        if success:  # the disclosure audit of everything the build would publish, in the same gate
            from ewi.disclosure.audit import build_check

            built = [n["name"] for n in nodes if n["resource_type"] == "model" and n["schema"] == STAGING_SCHEMA]
            with warehouse.connect(autocommit=True) as conn:
                check = build_check(conn, built, STAGING_SCHEMA, PUBLISHED_SCHEMA)
            nodes.append(check)
            phase_seconds.append({"phase": "disclosure audit", "s": round(check["execution_time"], 2)})
            if check["status"] in _FAILED:
                failures.append({"node": check["unique_id"], "message": _scrub(check["message"])})
                success = False
    if "s" in farrington:
        phase_seconds.append({"phase": "farrington (beside the build)", "s": farrington["s"]})

    published = False
    marts = [n["name"] for n in nodes
             if n["resource_type"] == "model" and n["schema"] == STAGING_SCHEMA and n["status"] == "success"]
    with warehouse.connect(autocommit=True) as conn:
        if success and marts:
            try:
                _publish(conn, marts, run["run_id"])
                published = run["published"] = True
            except psycopg.Error as exc:  # e.g. a view in `published` depends on a mart
                success = False
                failures.append({"node": "publish", "message": _scrub(str(exc))})
        if success:
            # only now: a seed whose tests failed must be loaded and tested again by the next build
            loaded = {n["unique_id"] for n in nodes if n["resource_type"] == "seed" and n["status"] == "success"}
            _mark_seeds(conn, {key: checksum for uid, (key, checksum) in seeds.items() if uid in loaded})
        summary = {
            "success": success,
            "status": "success" if success else "failed",
            "counts": _counts(nodes),
            "failures": failures,
            "published": published,
            "published_models": marts if published else [],
            "full_refresh": full_refresh,
            "full_refresh_reason": full_refresh_reason,
            "seeds_reloaded": reload_seeds,
            "elapsed_s": round(time.monotonic() - started, 2),
            # where a build's time goes (make bench): each phase, and the slowest nodes
            "timings": {
                "phases": phase_seconds,
                "slowest_nodes": [
                    {"node": n["name"], "type": n["resource_type"], "s": round(n["execution_time"] or 0, 2)}
                    for n in sorted(nodes, key=lambda n: -(n["execution_time"] or 0))[:12]
                ],
            },
        }
        failed_nodes = sorted({f["node"].split(".")[-1] for f in failures})
        reason = None if success else (f"{len(failures)} failure(s), nothing published: "
                                       + ", ".join(failed_nodes[:5]) + (", ..." if len(failed_nodes) > 5 else ""))
        build_runs.finish(conn, {**summary, **run, "finished_at": datetime.now(UTC), "reason": reason}, nodes)
    summary["run_id"] = run["run_id"]
    log.info("dbt build %s in %.1fs (%s)", summary["status"], summary["elapsed_s"], summary["counts"])
    return summary


def unit_tests() -> dict:
    """Run the dbt unit tests, which builds leave out: each runs one model's SQL on fixed input rows
    and compares the result with the expected rows, so it tests the code, not the data. dbt reads the
    column types of a model's inputs from the warehouse, so the models must have been built once;
    marts are read where a build publishes them. Writes nothing. Returns success, counts, failures."""
    res = _invoke(["test", "--select", "test_type:unit", "--vars", json.dumps({"marts_schema": PUBLISHED_SCHEMA})])
    nodes = _node_results(res)
    failures = [{"node": n["unique_id"], "message": n["message"]} for n in nodes if n["status"] in _FAILED]
    if res.exception is not None:
        failures.append({"node": "dbt", "message": _scrub(str(res.exception))})
    return {"success": bool(res.success) and not failures, "counts": _counts(nodes), "failures": failures}


def source_freshness() -> list[dict]:
    """`dbt source freshness`: per raw table, dbt's verdict (pass, warn, error, runtime error) on
    the freshness sources.yml declares, and the age in hours of its newest published row."""
    # Its own target folder: it may run while a build writes the manifest the lineage page reads.
    res = _invoke(["source", "freshness", "--select", "source:raw"],
                  target_path=_dbt_dirs()[0].parent / "freshness-target")
    verdicts = []
    for r in getattr(res.result, "results", None) or []:
        node = getattr(r, "node", None)
        age = getattr(r, "age", None)
        verdicts.append({"source": getattr(node, "name", "?"), "status": str(getattr(r.status, "value", r.status)),
                         "age_hours": None if age is None else round(age / 3600, 1)})
    return verdicts


def docs(out_dir: Path | None = None) -> dict:
    """`dbt docs generate` against the published marts, copied to $EWI_HOME/dbt-docs/ (or out_dir)
    for the auditors' lineage view."""
    started = time.monotonic()
    res = _invoke(["docs", "generate", "--vars", json.dumps({"marts_schema": PUBLISHED_SCHEMA})])
    target, _ = _dbt_dirs()
    out = Path(out_dir or config.ewi_home() / "dbt-docs")
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in ("index.html", "manifest.json", "catalog.json"):
        if (target / name).exists():
            shutil.copy2(target / name, out / name)
            copied.append(name)
    return {
        "success": bool(res.success),
        "path": str(out),
        "files": copied,
        "elapsed_s": round(time.monotonic() - started, 2),
    }
