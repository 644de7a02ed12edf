"""Benchmarks of the embedded warehouse's upkeep: the disk a load takes, and recovery after kill -9.

    python -m ewi.bench disk [--rows N]     peak growth of the data directory per byte of the file
    python -m ewi.bench recovery            kill -9 of the postmaster at two years of data

Both run in an EWI_HOME of their own (a server of their own), never the developer's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _ewi(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for name in ("EWI_WAREHOUSE_DSN", "EWI_WAREHOUSE_DB"):
        env.pop(name, None)  # a server of its own, under `home`
    env["EWI_HOME"] = str(home)
    ewi = Path(sys.executable).parent / "ewi"
    return subprocess.run([str(ewi), *args], env=env, capture_output=True, text=True, check=check)


def _peak_growth(pgdata: Path, run) -> tuple[int, object]:
    """Run `run()` while sampling the data directory's size; returns (peak growth, run's result)."""
    from ewi.embedded_server import data_directory_bytes

    before = data_directory_bytes(pgdata)
    peak = before
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, data_directory_bytes(pgdata))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = run()
    finally:
        done.set()
        sampler.join()
    peak = max(peak, data_directory_bytes(pgdata))
    return peak - before, result


def bench_disk(rows: int) -> dict:
    """The factor behind warehouse.LOAD_DISK_FACTOR: a school-absence week that publishes, and the
    same week with one value that does not parse (loaded twice, the second time as text, then
    copied into quarantine), each into a fresh warehouse, so the write-ahead log starts empty."""
    from ewi import synth

    work = Path(tempfile.mkdtemp(prefix="ewi-bench-disk-"))
    results = {}
    try:
        good = synth.write_school_absence_week(work / "school_absence_2026-W10_20260309T0600.csv",
                                               rows=rows, period="2026-W10", seed=11)
        bad = work / "school_absence_2026-W11_20260316T0600.csv"
        synth.write_school_absence_week(bad, rows=rows, period="2026-W11", seed=12)
        with bad.open("rb+") as fh:
            fh.readline()
            line = fh.readline().decode().rstrip("\n").split(",")
            fh.seek(0, 2)
            line[-1] = "x"  # a count that is no integer: the whole file is loaded again as text
            fh.write((",".join(line) + "\n").encode())
        manifest = Path(f"{bad}.manifest.json")  # the delivery's sidecar must still match it
        sidecar = json.loads(manifest.read_text())
        sidecar.update(row_count=rows + 1, sha256=hashlib.sha256(bad.read_bytes()).hexdigest())
        manifest.write_text(json.dumps(sidecar))
        for label, path in (("published", good), ("quarantined", bad)):
            home = work / f"home-{label}"
            home.mkdir()
            _ewi(home, "warehouse", "init")
            growth, out = _peak_growth(home / "warehouse",
                                       lambda p=path, h=home: _ewi(h, "ingest", "--json", str(p), check=False))
            _ewi(home, "warehouse", "stop")
            status = json.loads(out.stdout.splitlines()[-1])["status"]
            size = path.stat().st_size
            results[label] = {"status": status, "file_mb": round(size / 1e6, 1),
                              "peak_growth_mb": round(growth / 1e6, 1), "factor": round(growth / size, 2)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from ewi.warehouse import LOAD_DISK_FACTOR

    return {"benchmark": "disk_per_load", "rows": rows, **results, "factor_used": LOAD_DISK_FACTOR}


def _recovery_log(pgdata: Path, offset: int) -> dict:
    text = (pgdata / "log").read_bytes()[offset:].decode("utf-8", "replace")
    out = {}
    redo = re.search(r"redo starts at (\S+)", text)
    done = re.search(r"redo done at (\S+).*elapsed: ([\d.]+) s", text)
    ckpt = re.search(r"checkpoint complete: wrote (\d+) buffers.*total=([\d.]+) s", text)
    if redo and done:
        def lsn(s: str) -> int:
            hi, lo = s.split("/")
            return (int(hi, 16) << 32) + int(lo, 16)
        out["wal_replayed_mb"] = round((lsn(done.group(1)) - lsn(redo.group(1))) / 1e6, 1)
        out["redo_s"] = float(done.group(2))
    if ckpt:
        out["end_of_recovery_checkpoint_s"] = float(ckpt.group(2))
        out["end_of_recovery_checkpoint_buffers"] = int(ckpt.group(1))
    return out


def _kill_and_recover(home: Path) -> dict:
    from ewi.embedded_server import data_directory_bytes, read_postmaster

    pgdata = home / "warehouse"
    pm = read_postmaster(pgdata)
    offset = (pgdata / "log").stat().st_size
    os.kill(pm.pid, signal.SIGKILL)
    started = time.perf_counter()
    out = _ewi(home, "warehouse", "url")
    wall = time.perf_counter() - started
    said = [line.split(": ", 1)[-1] for line in out.stderr.splitlines() if "WARNING" in line]
    return {"command_s": round(wall, 2), "data_directory_mb": round(data_directory_bytes(pgdata) / 1e6),
            **_recovery_log(pgdata, offset), "said": said}


def bench_recovery(weeks: int = 104) -> dict:
    """Two years of synthetic deliveries ingested and built, then kill -9 of the postmaster (1) right
    after the dbt build, with its write-ahead log not yet checkpointed, and (2) idle after a
    checkpoint; each time the wall time of the next command (`ewi warehouse url`), which waits for
    the old processes, runs crash recovery and answers."""
    import psycopg

    work = Path(tempfile.mkdtemp(prefix="ewi-bench-recovery-"))
    home = work / "home"
    home.mkdir()
    try:
        _ewi(home, "warehouse", "init")
        data = work / "data"
        _ewi(home, "synth", "--out", str(data), "--weeks", str(weeks), "--seed", "7")
        files = sorted(str(p) for p in data.glob("*.csv"))
        started = time.perf_counter()
        _ewi(home, "ingest", *files, check=False)
        ingest_s = time.perf_counter() - started
        _ewi(home, "transform")
        after_build = _kill_and_recover(home)
        dsn = _ewi(home, "warehouse", "url").stdout.strip()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("checkpoint")
        idle = _kill_and_recover(home)
        return {"benchmark": "recovery_after_kill_9", "weeks": weeks, "files": len(files),
                "ingest_s": round(ingest_s, 1), "after_dbt_build": after_build,
                "idle_after_checkpoint": idle}
    finally:
        _ewi(home, "warehouse", "stop", check=False)
        shutil.rmtree(work, ignore_errors=True)
