"""ewi_ingest's work: which files a run takes, how they are split into mapped tasks, the
write-audit-publish of each chunk, and which source assets a run announces."""

from __future__ import annotations

import logging
from datetime import datetime
from itertools import groupby
from pathlib import Path
from typing import Any

from ewi import config
from ewi.orchestration import landing
from ewi.sources import FILE_NAME_RE, SOURCES

log = logging.getLogger(__name__)

#: Files per mapped ingest task. A task instance costs about a second of Airflow overhead, so
#: one task per file would double the demo's 312-file ingest; a chunk is still small enough that a
#: retry (which finds its already-published files to be duplicates) is cheap.
DEFAULT_CHUNK_SIZE = 26



def prepare_warehouse() -> None:
    """Migrations and the area register (idempotent): what an ingest run needs before its files."""
    from ewi import warehouse_init

    warehouse_init.init_warehouse()


def delivered_files(paths: list[str] | None, landing_folder: str | None) -> list[Path]:
    """The files a run asked for by conf: the explicit `paths`, else every *.csv in
    `landing_folder`, else the ready deliveries in the configured landing folder."""
    if paths:
        return [Path(p).resolve() for p in paths]
    if not landing_folder:
        return landing.ready_files(config.landing_dir())
    folder = Path(landing_folder).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"landing folder does not exist: {folder}")
    return sorted(p.resolve() for p in folder.glob("*.csv"))


def files_to_ingest(paths: list[str] | None, landing_folder: str | None,
                    payloads: list[dict[str, Any]]) -> tuple[list[Path], dict[str, int]]:
    """The files an ingest run takes, and how it came to them.

    A run started by hand (conf `paths` or `landing`) takes what it was given. A run started by the
    landing watcher takes the files named in its triggering events' payloads that are still in the
    folder, plus every other ready delivery there: the scheduler does not always give a run every
    event that was queued before it was created (an event that arrives while the run is being
    created waits for the next event), so the sweep makes sure no ready file waits for a later
    delivery. Runs of ewi_ingest never overlap (max_active_runs=1) and each moves what it ingested
    to processed/, so every file is ingested by exactly one run; a named file that is gone was
    taken by an earlier run's sweep.
    """
    if paths or landing_folder:
        files = delivered_files(paths, landing_folder)
        return files, {"requested": len(files)}
    folder = config.landing_dir().resolve()
    named = []
    for payload in payloads:
        name = Path(str(payload.get("file", ""))).name  # a bare name: never a path out of the folder
        if landing.is_delivery_name(name):
            named.append(folder / name)
    present = [p for p in named if p.exists()]
    swept = [p for p in landing.ready_files(folder) if p not in present]
    files = sorted(set(present) | set(swept))
    return files, {"announced": len(named), "already_taken": len(named) - len(present), "swept": len(swept)}


def _delivery_key(path: Path) -> tuple[str, str, str, str]:
    m = FILE_NAME_RE.match(path.name)
    if not m:
        # Unrecognised names still go through ingest, which rejects and records them.
        return ("~", "", "", path.name)
    return (m["source"], m["period"], m["delivered"], path.name)


def plan_chunks(files: list[Path], chunk_size: int = DEFAULT_CHUNK_SIZE,
                mix_sources: bool = False) -> list[list[str]]:
    """Split deliveries into chunks for mapped ingest tasks.

    A later delivery for the same source and period replaces the earlier one, so all deliveries of
    one source+period stay in one chunk, in delivery order. Chunks of different periods may then
    run in any order or in parallel. Chunks mix sources only with `mix_sources` (the watcher's
    runs, with a few files each: one task start, about 5 s on two cores, instead of one per source).
    """
    ordered = sorted(files, key=_delivery_key)
    if mix_sources:
        return _pack(groupby(ordered, key=lambda p: _delivery_key(p)[:2]), chunk_size)
    chunks: list[list[str]] = []
    for _source, by_source in groupby(ordered, key=lambda p: _delivery_key(p)[0]):
        chunks += _pack(groupby(by_source, key=lambda p: _delivery_key(p)[1]), chunk_size)
    return chunks


def _pack(groups, chunk_size: int) -> list[list[str]]:
    """Consecutive groups of deliveries packed into chunks of about `chunk_size`, never splitting a
    group (a group larger than a chunk is a chunk of its own)."""
    chunks: list[list[str]] = []
    current: list[str] = []
    for _key, group in groups:
        deliveries = [str(p) for p in group]
        if current and len(current) + len(deliveries) > chunk_size:
            chunks.append(current)
            current = []
        current.extend(deliveries)
    return chunks + ([current] if current else [])


def chunk_label(paths: list[str]) -> str:
    """A readable name for a chunk in the Airflow UI (map_index_template): source and periods."""
    keys = [_delivery_key(Path(p)) for p in paths]
    if not keys:
        return "empty"
    first, last = keys[0], keys[-1]
    if len({k[0] for k in keys}) > 1:
        periods = sorted({k[1] for k in keys if k[1]})
        span = periods[0] if len(periods) == 1 else f"{periods[0]}..{periods[-1]}" if periods else "?"
        return f"{len({k[0] for k in keys})} sources {span} ({len(keys)} files)"
    if first[0] == "~":
        return f"unrecognised file names ({len(keys)})"
    span = first[1] if first[1] == last[1] else f"{first[1]}..{last[1]}"
    return f"{first[0]} {span} ({len(keys)} files)"


def ingest_chunk(paths: list[str]) -> list[dict[str, Any]]:
    """Write-audit-publish each file of a chunk, in order. Returns the results as dicts (XCom).

    A quarantined or rejected delivery is the gate working, not a task failure: the task succeeds
    and the outcome is in the results and in audit.batches. Files in the watched landing folder
    move to processed/<status>/ as soon as their outcome is recorded, so a retry of this task
    takes only the files it had not finished.
    """
    from ewi.ingest import ingest_file
    from ewi.ingest.reading import safe_file_name

    folder = config.landing_dir()
    results = []
    for p in paths:
        path = Path(p)
        if not path.exists() and landing.in_folder(path, folder):  # moved by an earlier try
            log.info("already ingested and moved: %s", safe_file_name(path.name))
            continue
        r = ingest_file(path)
        log.info("%s %s %s rows=%s", r.status, r.source, r.period, r.rows)
        if landing.in_folder(path, folder):
            landing.archive(path, r.status, folder)
        results.append(r.as_dict())
    return results


def refresh_data_docs_index() -> None:
    """Rebuild the GX Data Docs index page (the latest validations; every page stays on disk)."""
    from ewi.ingest import gate

    gate.build_index()


def published_batches(source: str, file_names: list[str], since: datetime) -> list[dict[str, Any]]:
    """Batches of `source` among `file_names` that were published at or after `since`.

    audit.batches, not the ingest tasks' return values, decides whether an asset event is due:
    after a retry an already-published file comes back as a duplicate, and a chunk that failed
    half-way has no return value at all, yet its published batches did change raw.<source>.
    Superseded counts too: it was published in this window before a correction replaced it.
    """
    import psycopg

    from ewi import warehouse

    if not file_names:
        return []
    with psycopg.connect(warehouse.dsn()) as conn:
        rows = conn.execute(
            """select batch_id, period from audit.batches
               where source = %s and file_name = any(%s)
                 and status in ('published', 'superseded')
                 and coalesce(decided_at, received_at) >= %s
               order by period, batch_id""",
            (source, file_names, since),
        ).fetchall()
    return [{"batch_id": b, "period": p} for b, p in rows]


def file_names_by_source(chunks: list[list[str]]) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {s: [] for s in SOURCES}
    for chunk in chunks:
        for p in chunk:
            source = _delivery_key(Path(p))[0]
            if source in names:
                names[source].append(Path(p).name)
    return names


def summarise(results: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"published": 0, "quarantined": 0, "rejected": 0, "duplicate": 0}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return counts
