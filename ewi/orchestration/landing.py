"""The landing folder: which delivered files are ready to ingest, and where ingested ones go.

A delivery is ready when a sender has finished writing it. Two conventions are honoured:

- Temporary names. A sender writes under a name that is not a delivery name (`*.tmp`, `*.part`,
  `.name.csv`, anything else) and renames it when done; a rename is atomic, so a file with a
  delivery name (`<source>_<YYYY-Www>_<YYYYMMDDTHHMM>.csv`, the contract's pattern) is complete.
  Files with any other name are never picked up.
- Manifests. A sender writes `<file>.manifest.json` beside the file (after it). A file whose
  manifest is present is ready as soon as the file's sha256 equals the manifest's; a file of a
  source that is configured to always send manifests waits for its manifest.

Every other delivery-named file is ready once neither it nor its manifest has changed for
`settle_seconds` (a sender writing in place keeps moving the mtime). A waiting file is never held
for ever: a manifest that does not match or never comes is given up on after the settle or
manifest wait, and ingest then records what is wrong (checksum mismatch, missing rows).

The rules are stateless (they look at names, manifests, content and mtimes), so the triggerer's
watcher and the ingest run's own sweep of the folder reach the same verdict.

Ingested files move to `<landing>/processed/<status>/` (with their manifest) so they are never
picked up twice; ingest is idempotent by sha256 anyway.

Only the standard library and the source registry (itself standard library only) are imported here:
the DAG files (parse time) and the triggerer use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from ewi.settings import get_settings
from ewi.sources import FILE_NAME_RE

MANIFEST_SUFFIX = ".manifest.json"
PROCESSED = "processed"


@dataclass(frozen=True)
class Rules:
    """How long to wait for a delivery to be complete."""

    settle_seconds: float = 5.0
    #: Sources whose every delivery comes with a manifest: their files wait for it.
    manifest_sources: tuple[str, ...] = ()
    #: How long a file of a manifest source waits for a manifest that does not come.
    manifest_wait_seconds: float = 900.0

    @classmethod
    def from_env(cls) -> Rules:
        settings = get_settings()
        return cls(
            settle_seconds=settings.landing_settle_seconds,
            manifest_sources=settings.landing_manifest_sources,
            manifest_wait_seconds=settings.landing_manifest_wait_seconds,
        )


@dataclass(frozen=True)
class Verdict:
    ready: bool
    #: why: manifest, settled, manifest-mismatch, manifest-missing (ready); settling,
    #: manifest-pending, manifest-mismatch (waiting)
    reason: str


@dataclass
class _HashCache:
    """sha256 per (path, size, mtime): a waiting file is not re-read on every poll."""

    entries: dict[tuple[str, int, int], str] = field(default_factory=dict)

    def sha256(self, path: Path, st: os.stat_result) -> str:
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self.entries:
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            self.entries = {k: v for k, v in self.entries.items() if k[0] != key[0]}
            self.entries[key] = digest.hexdigest()
        return self.entries[key]


def is_delivery_name(name: str) -> bool:
    return FILE_NAME_RE.match(name) is not None


def manifest_of(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


#: A manifest is four short values; a larger one is not read (ingest then refuses it).
MANIFEST_MAX_BYTES = 64 * 1024


def _declared_sha256(manifest: Path) -> str | None:
    """The manifest's sha256, if it is a regular file that says one. A symbolic link (to /dev/zero,
    say), a named pipe or a device is not opened for reading, so the watcher cannot hang on it;
    such a delivery waits like a mismatch, and ingest refuses and records it."""
    try:
        fd = os.open(manifest, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None  # gone, or a symbolic link
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb") as fh:
            fd = None
            value = json.loads(fh.read(MANIFEST_MAX_BYTES + 1).decode("utf-8")).get("sha256")
    except (OSError, ValueError, AttributeError):
        return None  # still being written, or not a manifest at all
    finally:
        if fd is not None:
            os.close(fd)
    return str(value).lower() if value else None


def verdict(path: Path, rules: Rules, now: float | None = None, hashes: _HashCache | None = None) -> Verdict:
    """Whether the delivery at `path` (a delivery name, see is_delivery_name) is ready."""
    now = time.time() if now is None else now
    st = path.stat()
    manifest = manifest_of(path)
    try:
        manifest_mtime = manifest.lstat().st_mtime  # a link is a manifest present, not its target
    except FileNotFoundError:
        manifest_mtime = None
    quiet_for = now - max(st.st_mtime, manifest_mtime or 0.0)
    settled = quiet_for >= rules.settle_seconds

    if manifest_mtime is not None:
        declared = _declared_sha256(manifest)
        if declared and declared == (hashes or _HashCache()).sha256(path, st):
            return Verdict(True, "manifest")
        # Not (yet) matching: either a sender still writing, or a corrupted delivery that ingest
        # must see to record it.
        return Verdict(settled, "manifest-mismatch")
    source = FILE_NAME_RE.match(path.name)["source"]
    if source in rules.manifest_sources:
        if quiet_for >= rules.manifest_wait_seconds:
            return Verdict(True, "manifest-missing")
        return Verdict(False, "manifest-pending")
    return Verdict(settled, "settled" if settled else "settling")


def scan(directory: Path, rules: Rules, now: float | None = None,
         hashes: _HashCache | None = None) -> list[tuple[Path, Verdict]]:
    """Every delivery-named file directly in `directory`, with its verdict, in name order."""
    found = []
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    for entry in entries:
        if not entry.is_file(follow_symlinks=False) or not is_delivery_name(entry.name):
            continue
        try:
            found.append((Path(entry.path), verdict(Path(entry.path), rules, now, hashes)))
        except FileNotFoundError:  # moved away (ingested, or renamed by its sender) meanwhile
            continue
    return found


def ready_files(directory: Path, rules: Rules | None = None) -> list[Path]:
    rules = rules or Rules.from_env()
    return [path for path, v in scan(directory, rules) if v.ready]


def waiting_files(directory: Path, rules: Rules | None = None) -> list[Path]:
    rules = rules or Rules.from_env()
    return [path for path, v in scan(directory, rules) if not v.ready]


def archive(path: Path, status: str, landing: Path) -> Path:
    """Move an ingested delivery (and its manifest) to <landing>/processed/<status>/.

    A name already there (the same file name delivered again) gets a numbered suffix rather than
    overwriting the earlier delivery.
    """
    target_dir = landing / PROCESSED / status
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / path.name
    n = 1
    while target.exists():
        target = target_dir / f"{path.name}.{n}"
        n += 1
    manifest = manifest_of(path)
    os.replace(path, target)
    if manifest.exists():
        os.replace(manifest, target.with_name(target.name + MANIFEST_SUFFIX))
    return target


def in_folder(path: Path, folder: Path) -> bool:
    return path.resolve().parent == folder.resolve()
