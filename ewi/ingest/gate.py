"""The audit step: run a source's Great Expectations suite against a pending batch, in PostgreSQL.

GX is imported here only (it takes seconds to import), once per process. The validation runs on a
table asset over the batch's own pending table, with GX's SQL execution engine, so the batch is
never pulled into pandas. Results are kept to counts and fractions: no cell value from
the delivery is stored, logged or rendered into Data Docs.

The suite is validated in two lanes, one per core: the rules marked for the key lane (the
uniqueness of a compound key, which groups the whole batch: half the audit of a million-row school
week) run on a GX context of their own while the other rules run on the main one. The two lanes'
results are joined, in the suite's order, into one validation result: one result in the store, one
Data Docs page, as if GX had run the suite in one go.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from statistics import median

from ewi import config, expectations, school_calendar, warehouse
from ewi.sources import SOURCES, Delivery, Source

log = logging.getLogger(__name__)

RESULT_FORMAT = {
    "result_format": "BASIC",
    "partial_unexpected_count": 0,
    "exclude_unexpected_values": True,
    "include_unexpected_rows": False,
    "return_unexpected_index_query": False,
}
VOLUME_HISTORY = 8
#: In a school holiday week the floor is this share of the recent median instead of half of it:
#: referrals come largely from schools, and a Christmas week's 16 of a usual 38 is expected, not a fault.
HOLIDAY_VOLUME_SHARE = 0.25
AUDIT_WORK_MEM = "256MB"
DOCS_INDEX_LIMIT = 25

#: The lane (GX context) of the rules that group the whole batch by its key (see the module text).
KEY_LANE = "key"
#: An expectation's meta key naming its lane (ewi.expectations marks the key rule).
LANE = "lane"
#: Added to each expectation's meta for a run: its place in the suite, to join the lanes' results.
SUITE_POSITION = "suite_position"

_contexts: dict[tuple[str, str], object] = {}
_locks: dict[str, threading.Lock] = {"content": threading.Lock(), KEY_LANE: threading.Lock()}


@dataclass
class CheckResult:
    expectation_type: str
    column: str | None
    success: bool
    observed: dict
    unexpected_count: int | None
    notes: str


@dataclass
class GateResult:
    success: bool
    checks: list[CheckResult] = field(default_factory=list)
    validation_result_id: str | None = None
    data_docs_path: str | None = None

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]

    def reason(self) -> str:
        parts = []
        # A rule that could not be evaluated (a numeric rule on a column that did not parse) is a
        # consequence; the failures that were measured come first.
        for c in sorted(self.failed, key=lambda c: bool(c.observed.get("not_evaluated"))):
            what = c.notes or c.expectation_type
            count = f" ({c.unexpected_count} rows)" if c.unexpected_count else ""
            if c.expectation_type == "expect_table_row_count_to_be_between":
                count = f" ({c.observed.get('observed_value')} rows, expected at least {c.observed.get('min_value')})"
            if c.observed.get("not_evaluated"):
                count = " (not evaluated)"
            parts.append(f"{what}{count}")
        return "checks failed: " + "; ".join(parts)


def warm_up() -> None:
    """Import GX and set up both lanes' contexts: paid once per worker process, not per file."""
    _gx_context()
    _gx_context(KEY_LANE)


def _gx_context(lane: str = "content"):
    """An in-memory GX context with a filesystem Data Docs site under $EWI_HOME/gx: nothing is
    written to the project tree, and concurrent tasks do not race on a shared config file.
    The key lane's context only validates: its results are joined into the content lane's."""
    url = warehouse.sqlalchemy_url()
    if (url, lane) in _contexts:
        return _contexts[(url, lane)]
    import warnings

    import great_expectations as gx
    from great_expectations.datasource.fluent import GxDatasourceWarning

    from ewi.ingest import gx_expectations  # noqa: F401 - registers EWI's expectation with GX

    # A generic SQL datasource is deliberate: the Postgres one refuses socket-only DSNs.
    warnings.filterwarnings("ignore", category=GxDatasourceWarning)
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.data_sources.add_sql(name="warehouse", connection_string=_audit_url(url))
    if lane == KEY_LANE:
        _contexts[(url, lane)] = context
        return context
    gx_dir = config.ewi_home() / "gx"
    docs_dir = gx_dir / "data_docs"
    docs_dir.mkdir(parents=True, exist_ok=True)
    # Validation results are kept on disk (counts only, see RESULT_FORMAT): the Data Docs index is
    # built from this store, and GX removes every page whose result is not in it, so an in-memory
    # store made each ingest process delete the pages of all earlier ones.
    context.add_store("ewi_validation_results", {
        "class_name": "ValidationResultsStore",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                          "base_directory": str(gx_dir / "validation_results")},
    })
    context.validation_results_store_name = "ewi_validation_results"
    context.add_data_docs_site(
        site_name="ewi",
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            # The index lists the latest validations (it loads each result it lists: 4 s per ingest
            # call at 200); every page stays, linked from audit.batches and the auditor view.
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder",
                                   "validation_results_limit": DOCS_INDEX_LIMIT},
        },
    )
    for source in SOURCES.values():
        suite_json = expectations.load_suite(source)
        suite = gx.ExpectationSuite(**suite_json)
        if len(suite.expectations) != len(suite_json["expectations"]):
            raise RuntimeError(f"GX refused part of suite {suite_json['name']}")
        context.suites.add(suite)
    _contexts[(url, "content")] = context
    return context


def _audit_url(url: str) -> str:
    """The audit's connection: the uniqueness check groups a whole batch, which at a million rows
    spills to disk with PostgreSQL's default 4 MB of work memory."""
    from sqlalchemy.engine import make_url

    return make_url(url).update_query_dict({"options": f"-c work_mem={AUDIT_WORK_MEM}"}).render_as_string(
        hide_password=False)


def volume_floor(conn, source: Source, period: str) -> int:
    """Half the median row count of the source's last published batches (at least 1); a quarter of
    it when the school calendar says the delivery's week is a holiday week (ewi.school_calendar)."""
    counts = [r[0] for r in conn.execute(
        "select rows_published from audit.batches where source = %s and status in ('published', 'superseded') "
        "and rows_published is not null order by decided_at desc limit %s",
        (source.name, VOLUME_HISTORY),
    ).fetchall()]
    if not counts:
        return 1
    share = HOLIDAY_VOLUME_SHARE if school_calendar.is_school_holiday(period) else 0.5
    return max(1, math.ceil(median(counts) * share))


def parameters(conn, delivery: Delivery) -> dict:
    source = delivery.source
    if source.period_column == "iso_week":
        period_values = [delivery.period]
    else:
        period_values = [d.isoformat() for d in delivery.week_dates]
    low, high = delivery.birth_year_range
    return {
        "min_rows": volume_floor(conn, source, delivery.period),
        "period_values": period_values,
        "birth_years": [str(y) for y in range(low, high + 1)],
        "area_codes": [r[0] for r in conn.execute("select area_code from ref.areas order by area_code").fetchall()],
    }


def _summarise(result: dict) -> dict:
    keep = ("observed_value", "element_count", "unexpected_count", "unexpected_percent", "missing_count")
    summary = {k: result[k] for k in keep if k in result and isinstance(result[k], (int, float, type(None)))}
    return summary


def validate(batch_id: str, delivery: Delivery, params: dict, table: str) -> GateResult:
    """Run the source's suite against pending.<table>, the batch's own pending table, in two lanes
    (see the module text). A table asset (not a query) lets GX read the column types from the
    catalogue for the type checks."""
    source = delivery.source
    context = _gx_context()
    suite = context.suites.get(expectations.suite_name(source))
    lanes = _split_into_lanes(suite)
    results = _run_lanes(lanes, batch_id, source, table, params)
    joined, identifier = _store_joined_result(context, suite, batch_id, results, lanes)
    with _locks["content"]:
        docs_path = _build_docs_page(context, identifier)
    return GateResult(success=joined.success, checks=[_check_result(r, params) for r in joined.results],
                      validation_result_id=str(identifier.to_tuple()[-1]), data_docs_path=docs_path)


def _split_into_lanes(suite) -> dict:
    """The suite as one sub-suite per lane; each expectation carries its place in the suite."""
    from great_expectations.core import ExpectationSuite

    lanes: dict[str, list] = {"content": [], KEY_LANE: []}
    for i, e in enumerate(suite.expectations):
        e = copy.copy(e)  # GX wants copies: an expectation belongs to one suite
        e.meta = {**(e.meta or {}), SUITE_POSITION: i}
        lanes[KEY_LANE if e.meta.get(LANE) == KEY_LANE else "content"].append(e)
    return {lane: ExpectationSuite(name=suite.name, expectations=exps) for lane, exps in lanes.items()}


def _run_lanes(lanes: dict, batch_id: str, source: Source, table: str, params: dict) -> dict:
    """Each lane's validation result: the key lane on a thread of its own, the content lane here."""
    key_lane: dict = {}

    def run_key_lane() -> None:
        try:
            key_lane["result"] = _run_lane(KEY_LANE, batch_id, source, table, lanes[KEY_LANE], params)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the calling thread
            key_lane["error"] = exc

    worker = None
    if lanes[KEY_LANE].expectations:
        worker = threading.Thread(target=run_key_lane, name=f"key-lane-{batch_id}")
        worker.start()
    try:
        content = _run_lane("content", batch_id, source, table, lanes["content"], params)
    finally:
        if worker:
            worker.join()
    if "error" in key_lane:
        raise key_lane["error"]
    return {"content": content, **({KEY_LANE: key_lane["result"]} if worker else {})}


def _store_joined_result(context, suite, batch_id: str, results: dict, lanes: dict):
    """Join the lanes' results, in the suite's order, into one validation result, as GX would give
    for the whole suite, and keep it in the context's store (Data Docs are rendered from there)."""
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    content = results["content"]
    ordered = sorted((r for result in results.values() for r in result.results),
                     key=lambda r: r.expectation_config.meta[SUITE_POSITION])
    if [r.expectation_config.meta[SUITE_POSITION] for r in ordered] != list(range(len(suite.expectations))):
        raise RuntimeError(f"the lanes of suite {suite.name} returned {len(ordered)} results "
                           f"for {len(suite.expectations)} expectations")
    passed = sum(bool(r.success) for r in ordered)
    run_id = RunIdentifier(run_name=batch_id, run_time=datetime.now(UTC))
    joined = ExpectationSuiteValidationResult(
        success=passed == len(ordered), results=ordered, suite_name=suite.name, batch_id=content.batch_id,
        statistics={"evaluated_expectations": len(ordered), "successful_expectations": passed,
                    "unsuccessful_expectations": len(ordered) - passed,
                    "success_percent": 100.0 * passed / len(ordered) if ordered else None},
        meta={**content.meta, "run_id": run_id, "validation_time": run_id.run_time,
              "lanes": {lane: len(sub.expectations) for lane, sub in lanes.items()}},
    )
    suite_id = ExpectationSuiteIdentifier(name=suite.name)
    identifier = ValidationResultIdentifier(expectation_suite_identifier=suite_id, run_id=run_id,
                                            batch_identifier=content.batch_id)
    with _locks["content"]:
        context.validation_results_store.store_validation_results(joined, identifier, suite_id)
    return joined, identifier


def _check_result(r, params: dict) -> CheckResult:
    """One expectation's result as audit.check_results keeps it: counts, never a cell."""
    cfg = r.expectation_config
    kwargs = cfg.kwargs
    observed = _summarise(r.result or {})
    if cfg.type == "expect_column_values_to_be_in_type_list":
        observed["observed_value"] = str((r.result or {}).get("observed_value"))  # a type name
    if _raised(r.exception_info):
        # The database's message may quote a cell; only the fact leaves here. On a batch
        # loaded as text (a value did not parse) the numeric rules cannot be evaluated.
        observed["not_evaluated"] = True
    if cfg.type == "expect_table_row_count_to_be_between":
        observed["min_value"] = params["min_rows"]
    return CheckResult(
        expectation_type=cfg.type,
        column=kwargs.get("column") or (",".join(kwargs["column_list"]) if kwargs.get("column_list") else None),
        success=bool(r.success),
        observed=observed,
        unexpected_count=(r.result or {}).get("unexpected_count", (r.result or {}).get("observed_value")
                                              if cfg.type == expectations.QUERY_RULE else None),
        notes=(cfg.meta or {}).get("notes", ""),
    )


def _run_lane(lane: str, batch_id: str, source: Source, table: str, suite, params: dict):
    """Validate the batch's pending table against `suite` on the lane's own context."""
    from great_expectations.validator.v1_validator import Validator

    context = _gx_context(lane)
    with _locks[lane]:
        datasource = context.data_sources.get("warehouse")
        # Each batch gets its own asset so Data Docs pages carry the batch id.
        asset = datasource.add_table_asset(name=f"{source.name}_{batch_id}", table_name=table,
                                           schema_name="pending")
        try:
            validator = Validator(batch_definition=asset.add_batch_definition_whole_table("batch"),
                                  result_format=RESULT_FORMAT)
            return validator.validate_expectation_suite(suite, expectation_parameters=params)
        finally:
            datasource.delete_asset(asset.name)


def _raised(info) -> bool:
    """GX reports an exception per expectation, or per metric in a nested mapping."""
    if not isinstance(info, dict):
        return False
    if info.get("raised_exception"):
        return True
    return any(isinstance(v, dict) and v.get("raised_exception") for v in info.values())


def _build_docs_page(context, identifier) -> str | None:
    """Render this validation's Data Docs page. The site index is rebuilt once per ingest call
    (build_index), not per file: GX lists every past page to build it."""
    try:
        context.build_data_docs(site_names=["ewi"], resource_identifiers=[identifier], build_index=False)
        for site in context.get_docs_sites_urls(resource_identifier=identifier, site_name="ewi"):
            return str(site["site_url"]).removeprefix("file://")
    except Exception:  # noqa: BLE001 - Data Docs are a courtesy view; the audit tables hold the facts
        log.warning("could not build the Data Docs page of a validation", exc_info=True)
    return None


def build_index() -> None:
    """Rebuild the Data Docs index page over the latest validations on disk (DOCS_INDEX_LIMIT)."""
    context = _gx_context()
    with _locks["content"]:
        try:
            context.build_data_docs(site_names=["ewi"], build_index=True)
        except Exception:  # noqa: BLE001 - a stray file in the docs folder must not fail an ingest
            log.warning("could not rebuild the Data Docs index", exc_info=True)
