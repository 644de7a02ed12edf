"""Readiness rules of the landing folder, on real files: temporary names, manifests pending or not
matching, settling files; the watcher's trigger; archiving ingested deliveries."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from ewi.orchestration import landing
from tests import extracts

NAME = "contacts_2026-W01_20260105T0600.csv"
RULES = landing.Rules(settle_seconds=5, manifest_sources=("school_absence",), manifest_wait_seconds=60)


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _verdict(path: Path, rules: landing.Rules = RULES) -> landing.Verdict:
    return dict(landing.scan(path.parent, rules)).get(path) or landing.Verdict(False, "not scanned")


def test_only_delivery_names_count(tmp_path):
    for name in (f"{NAME}.tmp", f"{NAME}.part", f".{NAME}", "contacts_2026-W01.csv", "notes.txt"):
        (tmp_path / name).write_text("x")
        _age(tmp_path / name, 600)
    assert landing.scan(tmp_path, RULES) == []
    os.replace(tmp_path / f"{NAME}.part", tmp_path / NAME)  # the sender's rename when done
    assert [p.name for p in landing.ready_files(tmp_path, RULES)] == [NAME]


def test_a_file_being_written_in_place_waits_until_it_settles(tmp_path):
    path = extracts.write(tmp_path, "contacts", "2026-W01")
    assert _verdict(path) == landing.Verdict(False, "settling")
    _age(path, 6)
    assert _verdict(path) == landing.Verdict(True, "settled")
    with open(path, "a") as fh:  # the sender appends again: mtime moves, the clock restarts
        fh.write("\n")
    assert not _verdict(path).ready


def test_a_matching_manifest_makes_a_file_ready_at_once(tmp_path):
    path = extracts.write(tmp_path, "referrals", "2026-W01", manifest=True)
    assert _verdict(path) == landing.Verdict(True, "manifest")


def test_a_manifest_that_does_not_match_yet_waits_then_lets_ingest_judge(tmp_path):
    path = extracts.write(tmp_path, "referrals", "2026-W01")
    extracts.write_manifest(path, "referrals", "2026-W01", 40, hashlib.sha256(b"other").hexdigest())
    assert _verdict(path) == landing.Verdict(False, "manifest-mismatch")
    _age(path, 10)
    _age(landing.manifest_of(path), 10)
    # Still wrong after settling: a truncated or corrupted delivery, which ingest rejects and records.
    assert _verdict(path) == landing.Verdict(True, "manifest-mismatch")


def test_a_half_written_manifest_is_not_trusted(tmp_path):
    path = extracts.write(tmp_path, "referrals", "2026-W01")
    landing.manifest_of(path).write_text('{"source": "referrals", "sha2')
    assert not _verdict(path).ready


def test_a_manifest_source_waits_for_its_manifest(tmp_path):
    path = extracts.write(tmp_path, "school_absence", "2026-W01")
    _age(path, 30)
    assert _verdict(path) == landing.Verdict(False, "manifest-pending")
    data = path.read_bytes()
    extracts.write_manifest(path, "school_absence", "2026-W01", 40, hashlib.sha256(data).hexdigest())
    assert _verdict(path) == landing.Verdict(True, "manifest")


def test_a_manifest_that_never_comes_is_given_up_on(tmp_path):
    path = extracts.write(tmp_path, "school_absence", "2026-W01")
    _age(path, 61)
    assert _verdict(path) == landing.Verdict(True, "manifest-missing")


def test_rules_from_the_environment(monkeypatch):
    monkeypatch.setenv("EWI_LANDING_SETTLE_SECONDS", "2.5")
    monkeypatch.setenv("EWI_LANDING_MANIFEST_SOURCES", "school_absence, referrals")
    monkeypatch.setenv("EWI_LANDING_MANIFEST_WAIT_SECONDS", "30")
    assert landing.Rules.from_env() == landing.Rules(2.5, ("school_absence", "referrals"), 30.0)


def test_archive_moves_the_file_and_its_manifest_and_keeps_earlier_ones(tmp_path):
    first = extracts.write(tmp_path, "referrals", "2026-W01", manifest=True)
    moved = landing.archive(first, "published", tmp_path)
    assert moved == tmp_path / "processed" / "published" / first.name
    assert landing.manifest_of(moved).exists() and not first.exists()
    again = extracts.write(tmp_path, "referrals", "2026-W01")
    assert landing.archive(again, "published", tmp_path).name == f"{first.name}.1"
    assert landing.scan(tmp_path, RULES) == []  # processed/ is never scanned


def _collect(trigger, seconds: float) -> list[dict]:
    async def run():
        events = []

        async def consume():
            async for event in trigger.run():
                events.append(event.payload)

        task = asyncio.create_task(consume())
        await asyncio.sleep(seconds)
        task.cancel()
        return events

    return asyncio.run(run())


@pytest.fixture
def trigger_class():
    pytest.importorskip("airflow")
    from ewi.orchestration.triggers import LandingFolderTrigger

    return LandingFolderTrigger


def test_trigger_announces_each_ready_file_once(tmp_path, trigger_class):
    ready = extracts.write(tmp_path, "referrals", "2026-W01", manifest=True)
    extracts.write(tmp_path, "contacts", "2026-W01")  # still settling: 30 s rule below
    (tmp_path / f"{NAME}.part").write_text("x")
    trigger = trigger_class(directory=str(tmp_path), poll_interval=0.05, settle_seconds=30)
    events = _collect(trigger, 0.5)
    assert [e["file"] for e in events] == [ready.name]
    assert events[0]["rule"] == "manifest" and events[0]["directory"] == str(tmp_path)


def test_trigger_serializes_to_its_import_path(trigger_class):
    trigger = trigger_class(directory="/x", manifest_sources=["school_absence"])
    classpath, kwargs = trigger.serialize()
    assert classpath == "ewi.orchestration.triggers.LandingFolderTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert trigger_class(**kwargs).serialize() == (classpath, kwargs)


@pytest.mark.parametrize("kind", ["named pipe", "dangling link", "oversized"])
def test_a_manifest_that_is_not_a_small_regular_file_is_not_read_and_the_delivery_waits_like_a_mismatch(
        tmp_path, kind):
    """A named pipe without a writer blocks whoever opens it for reading: the landing scan must not.
    The delivery becomes ready after it settles, so that ingest refuses it with an audit record."""
    path = extracts.write(tmp_path, "referrals", "2026-W01")
    manifest = landing.manifest_of(path)
    if kind == "named pipe":
        os.mkfifo(manifest)
    elif kind == "dangling link":
        manifest.symlink_to(tmp_path / "gone.json")
    else:
        manifest.write_text(json.dumps({"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "pad": "x" * 70_000}))
    verdicts: list = []
    scanner = threading.Thread(target=lambda: verdicts.append(_verdict(path)), daemon=True)
    scanner.start()
    scanner.join(timeout=20)
    assert not scanner.is_alive(), "the landing scan hangs on the manifest"
    assert verdicts == [landing.Verdict(False, "manifest-mismatch")]
    _age(path, 10)
    then = time.time() - 10
    os.utime(manifest, (then, then), follow_symlinks=False)
    assert _verdict(path) == landing.Verdict(True, "manifest-mismatch")
