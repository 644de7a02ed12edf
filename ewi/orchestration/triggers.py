"""LandingFolderTrigger: the event trigger behind the landing folder's AssetWatcher.

It runs in the triggerer (which imports it by its class path, `ewi.orchestration.triggers.LandingFolderTrigger`,
so the `ewi` package must be importable there), polls the landing folder and yields one
TriggerEvent per delivery that has become ready (ewi.orchestration.landing's rules). Airflow turns each event
into an event of the `landing` asset with extra {"from_trigger": true, "payload": <payload>},
which schedules ewi_ingest.

Why not the standard provider's triggers: FileDeleteTrigger watches one file path known in
advance and deletes the file when it appears, so it would destroy the delivery it announces (and
file names carry the period and delivery time, so they are not known in advance);
DirectoryFileDeleteTrigger has the same two problems, and FileTrigger is not an event trigger.

Deduplication is in memory: a ready file is announced once while it stays unchanged in the folder
(ingest moves it to processed/). A file still there `retry_after_seconds` later (its ingest run
failed) is announced again. After a triggerer restart files still in the folder are announced
again; the ingest run finds already-moved files gone, and ingest is idempotent by sha256.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from ewi.orchestration import landing


class LandingFolderTrigger(BaseEventTrigger):
    def __init__(self, directory: str, poll_interval: float = 2.0, settle_seconds: float = 5.0,
                 manifest_sources: list[str] | None = None, manifest_wait_seconds: float = 900.0,
                 retry_after_seconds: float = 900.0, **kwargs):
        super().__init__(**kwargs)
        self.directory = directory
        self.poll_interval = poll_interval
        self.settle_seconds = settle_seconds
        self.manifest_sources = list(manifest_sources or [])
        self.manifest_wait_seconds = manifest_wait_seconds
        self.retry_after_seconds = retry_after_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "directory": self.directory,
                "poll_interval": self.poll_interval,
                "settle_seconds": self.settle_seconds,
                "manifest_sources": self.manifest_sources,
                "manifest_wait_seconds": self.manifest_wait_seconds,
                "retry_after_seconds": self.retry_after_seconds,
            },
        )

    def rules(self) -> landing.Rules:
        return landing.Rules(self.settle_seconds, tuple(self.manifest_sources), self.manifest_wait_seconds)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        folder = Path(self.directory)
        rules = self.rules()
        hashes = landing._HashCache()
        announced: dict[str, tuple[int, int, float]] = {}  # name -> size, mtime_ns, announced at
        self.log.info("watching %s every %.1f s", folder, self.poll_interval)
        while True:
            # Directory listing and hashing are blocking calls; keep them off the event loop.
            found = await asyncio.to_thread(landing.scan, folder, rules, None, hashes)
            now = time.time()
            for path, verdict in found:
                if not verdict.ready:
                    continue
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                seen = announced.get(path.name)
                if seen and seen[:2] == (st.st_size, st.st_mtime_ns) and now - seen[2] < self.retry_after_seconds:
                    continue
                announced[path.name] = (st.st_size, st.st_mtime_ns, now)
                yield TriggerEvent({
                    "file": path.name,
                    "directory": str(folder),
                    "size": st.st_size,
                    "rule": verdict.reason,
                    "ready_at": round(now, 3),
                })
            present = {path.name for path, _ in found}
            for name in [n for n in announced if n not in present]:
                del announced[name]
            await asyncio.sleep(self.poll_interval)
