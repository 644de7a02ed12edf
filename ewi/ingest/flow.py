"""One delivered file through the gate: its name parsed once, when it arrives, then read, written,
checked, audited and decided, as one DeliveredFile passed from step to step (ewi.ingest's text
lists the steps)."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

from ewi import locks, warehouse
from ewi.ingest import decide, gate, pending, pseudonyms, reading
from ewi.ingest.decide import IngestResult
from ewi.ingest.publish import raise_if_stale
from ewi.ingest.reading import DeliveredFile, Rejection

log = logging.getLogger(__name__)


def new_batch_id() -> str:
    return uuid.uuid4().hex


def _delivery_order(file: DeliveredFile):
    """Files of one source and period are taken in delivery order, so a correction delivered
    later always wins, whatever order they were passed in."""
    d = file.delivery
    return (0, d.source.name, d.period, d.delivered.isoformat(), file.path.name) if d else (1, "", "", "", file.path.name)


def ingest_files(paths: list[Path], docs_index: bool = True, on_result=None) -> list[IngestResult]:
    """Write-audit-publish each file, in delivery order. `docs_index`: then rebuild the Data Docs
    index page once (each validation's own page is built by its audit). `on_result` is called with
    each file's result as it is decided, so a failure later on does not hide the decisions made."""
    results_by_path = {}
    for file in sorted((reading.arrived(p) for p in paths), key=_delivery_order):
        results_by_path[file.path] = ingest_delivered(file)
        if on_result is not None:
            on_result(results_by_path[file.path])
    if docs_index and any(r.data_docs for r in results_by_path.values()):
        gate.build_index()
    return [results_by_path[Path(p)] for p in paths]


def ingest_file(path: Path) -> IngestResult:
    return ingest_delivered(reading.arrived(path))


def ingest_delivered(file: DeliveredFile) -> IngestResult:
    result = IngestResult.of(file)
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        result.timings[stage] = round(now - clock, 3)
        clock = now

    with warehouse.connect() as conn:
        try:
            reading.fingerprint(file)
        except Rejection as refusal:  # not a regular file: recorded without checksum, nothing was read
            return decide.record_rejection(conn, result, file, new_batch_id(), refusal, resume=False)
        delivery = file.delivery
        # From the duplicate and stale checks to the decision's commit, no other delivery of this
        # source and period is checked or decided (ewi.locks): which one wins is decided by the
        # delivery timestamp, and a second copy of the same file waits and is then a duplicate.
        locks.hold_deliveries(conn, *((delivery.source.name, delivery.period) if delivery else ("file", file.sha256)))
        prior = decide.prior_delivery(conn, file.sha256)
        if prior and prior["undone"]:
            # Before deliveries were decided in turn, a late original could supersede its correction;
            # the correction delivered again repairs that instead of being a duplicate (decisions.md).
            log.info("%s: taken again: its earlier copy was superseded by an older delivery", result.file)
            prior = None
        if prior and prior["status"] != "pending":
            return decide.record_duplicate(conn, result, file, new_batch_id(), prior)
        batch_id = prior["batch_id"] if prior else new_batch_id()
        result.batch_id = batch_id
        try:
            reading.read(file)
            raise_if_stale(conn, file.delivery.source.name, file.delivery.period, file.delivery.delivered)
            lap("read")
        except Rejection as rejection:
            return decide.record_rejection(conn, result, file, batch_id, rejection, resume=bool(prior))

        warehouse.ensure_room_for_load(file.size)  # before the batch is registered: a refusal leaves nothing
        pending.register(conn, file, batch_id, resume=bool(prior))
        try:
            result.rows = pending.write(conn, file, batch_id)
            lap("write")
            pseudonyms.check_pending(conn, pending.table(file.delivery.source, batch_id), result.rows)
        except Rejection as rejection:
            return decide.record_rejection(conn, result, file, batch_id, rejection, resume=True)
        lap("pseudonyms")
        decide.audit_and_decide(conn, file.delivery, batch_id, result.rows, result, lap)
    log.info("%s: %s (%s rows) %s", result.file, result.status, result.rows, result.timings)
    return result
