"""Great Expectations suites, derived from the source registry.

The suites are kept as JSON in expectations/ so that auditors can read exactly what a delivery was
checked against; `python -m ewi.expectations` regenerates them and a test fails when the committed
JSON and the registry disagree. Values that depend on the delivery (its period, the birth years
allowed in it, the volume floor) are suite parameters, filled in at validation time.

Every check runs as SQL in PostgreSQL against the pending batch ({batch} is GX's placeholder for
it), and is written for the cost of a million-row week: integer columns arrive typed by COPY (a
file whose values do not parse arrives as text and fails the type check), set membership stands in
for a format wherever the set is known, and regular expressions avoid bounded repetition.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from ewi import config
from ewi.sources import SOURCES, Source

SUITE_VERSION = 3
#: A SQL rule over the batch that passes when its query returns no row (ewi.ingest.gx_expectations).
QUERY_RULE = "expect_query_to_return_no_rows"


def suite_name(source: Source) -> str:
    return f"ewi_{source.name}"


def _param(name: str) -> dict:
    return {"$PARAMETER": name}


def _expectation(kind: str, notes: str, **kwargs) -> dict:
    return {"type": kind, "kwargs": kwargs, "meta": {"notes": notes}}


#: Columns whose value set is fixed per delivery (its dates, the birth years of its age range, the
#: area register): membership also proves the format, so no regular expression is run for them.
SET_CHECKED = ("birth_year", "home_area_code")

_BOUNDED_CLASS = re.compile(r"^\^(\[[^\]]+\])\{(\d+)(?:,(\d+))?\}\$$")


def sql_pattern(pattern: str) -> tuple[str, int | None, int | None]:
    """A registry pattern as PostgreSQL checks it fastest: `^[class]{m,n}$` becomes `^[class]+$` plus
    a length rule. A bounded repetition costs PostgreSQL's regex engine about 15 times more than
    `+` (4.9 s against 0.3 s for a million 64-character pseudonyms, measured here)."""
    m = _BOUNDED_CLASS.match(pattern)
    if not m:
        return pattern, None, None
    low = int(m[2])
    high = int(m[3]) if m[3] else low
    return f"^{m[1]}+$", low, high


def _rows_query(where: str, source: Source) -> str:
    return f"SELECT 1 AS violation FROM {{batch}} WHERE {where}"  # noqa: S608 (trusted registry text)


def _column_expectations(source: Source, col) -> list[dict]:
    exps = [_expectation("expect_column_values_to_not_be_null", f"{col.name} is required.", column=col.name)]
    if col.load_type == "integer":
        # Pending columns are typed by COPY; a file whose values do not parse is loaded as text
        # and fails here, before any numeric rule is looked at.
        exps.append(_expectation(
            "expect_column_values_to_be_in_type_list", f"{col.name} is an integer.",
            column=col.name, type_list=["INTEGER"]))
    elif col.pattern and col.name not in SET_CHECKED and col.name != source.period_column:
        regex, low, high = sql_pattern(col.pattern)
        exps.append(_expectation(
            "expect_column_values_to_match_regex", f"{col.name}: {col.description}", column=col.name, regex=regex))
        if low is not None and low == high:
            # A LIKE of `_` x n holds exactly the n-character strings, as the length rule did; GX
            # evaluates it in the same pass as the other column rules, the length rule in one of its own.
            exps.append(_expectation(
                "expect_column_values_to_match_like_pattern", f"{col.name} is {low} characters long.",
                column=col.name, like_pattern="_" * low))
        elif low is not None:
            exps.append(_expectation(
                "expect_column_value_lengths_to_be_between", f"{col.name} is {low}-{high} characters long.",
                column=col.name, min_value=low, max_value=high))
    if col.allowed_values:
        exps.append(_expectation(
            "expect_column_values_to_be_in_set", f"{col.name} takes only the contract's values.",
            column=col.name, value_set=list(col.allowed_values)))
    if col.minimum is not None or col.maximum is not None:
        exps.append(_expectation(
            "expect_column_values_to_be_between",
            f"{col.name} between {col.minimum} and {col.maximum if col.maximum is not None else '∞'}.",
            column=col.name, min_value=col.minimum, max_value=col.maximum))
    return exps


def build_suite(source: Source) -> dict:
    exps: list[dict] = [
        _expectation(
            "expect_table_columns_to_match_set",
            "Exactly the contract's columns (plus the loader's batch id).",
            column_set=list(source.pending_columns),
            exact_match=True,
        ),
        _expectation(
            "expect_table_row_count_to_be_between",
            "Volume: at least half the median row count of the source's last 8 published batches "
            "(a quarter of it in a school holiday week).",
            min_value=_param("min_rows"),
            max_value=None,
        ),
    ]
    for col in source.columns:
        exps.extend(_column_expectations(source, col))

    exps.append(_expectation(
        "expect_column_values_to_be_in_set",
        f"{source.period_column} lies inside the delivery's ISO week.",
        column=source.period_column, value_set=_param("period_values")))
    exps.append(_expectation(
        "expect_column_values_to_be_in_set",
        f"Age in the period year is {source.age_range[0]}–{source.age_range[1]}.",
        column="birth_year", value_set=_param("birth_years")))
    exps.append(_expectation(
        "expect_column_values_to_be_in_set",
        "home_area_code exists in the area register (ref.areas).",
        column="home_area_code", value_set=_param("area_codes")))

    if len(source.key) == 1:
        exps.append(_expectation(
            "expect_column_values_to_be_unique", f"{source.key[0]} is unique in the delivery.",
            column=source.key[0]))
    else:
        # GX's expect_compound_columns_to_be_unique joins every row back to its group count: 4 s at a
        # million rows, against well under a second for listing the duplicated keys.
        # One row per duplicated key, holding only its number of copies. Grouping the whole batch
        # is as costly as the other rules together, so it runs in a lane of its own, on the other
        # core (ewi.ingest.gate).
        key = ", ".join(source.key)
        rule = _expectation(
            QUERY_RULE, f"({key}) is unique in the delivery.",
            unexpected_rows_query=f"SELECT count(*) AS copies FROM {{batch}} GROUP BY {key} HAVING count(*) > 1",  # noqa: S608
            description=f"duplicated ({key})")
        rule["meta"]["lane"] = "key"  # ewi.ingest.gate.LANE, KEY_LANE
        exps.append(rule)
    if source.key_scope == "source":
        key = source.key[0]
        # A key already published for another period is a clash; one published for this same
        # period is about to be replaced by this delivery (a correction), so it is not.
        exps.append(_expectation(
            QUERY_RULE,
            f"{key} is not already published by an earlier delivery for another period.",
            unexpected_rows_query=(
                f"SELECT b.batch_id FROM {{batch}} b "  # noqa: S608
                f"JOIN audit.batches this ON this.batch_id = b.batch_id "
                f"JOIN {source.raw_table} r ON r.{key} = b.{key} "
                f"JOIN audit.batches pub ON pub.batch_id = r.batch_id "
                f"WHERE pub.period <> this.period"
            ),
            description=f"{key} already published",
        ))
    if source.name == "school_absence":
        exps.append(_expectation(
            QUERY_RULE,
            "valid + invalid absence never exceeds scheduled minutes.",
            unexpected_rows_query=_rows_query(
                "valid_absence_minutes + invalid_absence_minutes > scheduled_minutes", source),
            description="absence above scheduled minutes",
        ))
    return {
        "name": suite_name(source),
        "expectations": exps,
        "meta": {
            "ewi_suite_version": SUITE_VERSION,
            "source": source.name,
            "generated_from": "ewi/sources.py (python -m ewi.expectations)",
            "parameters": {
                "min_rows": "volume floor, from the source's recent published batches",
                "period_values": "the values the period column may take for the delivery's ISO week",
                "birth_years": "birth years whose age in the period year is inside the contract's range",
                "area_codes": "the area codes of the area register (ref.areas) at validation time",
            },
        },
    }


def suite_path(source: Source) -> Path:
    return config.EXPECTATIONS_DIR / f"{source.name}.json"


def render(source: Source) -> str:
    return json.dumps(build_suite(source), indent=2, ensure_ascii=False) + "\n"


def load_suite(source: Source) -> dict:
    return json.loads(suite_path(source).read_text(encoding="utf-8"))


def write_all() -> list[Path]:
    config.EXPECTATIONS_DIR.mkdir(exist_ok=True)
    written = []
    for source in SOURCES.values():
        path = suite_path(source)
        path.write_text(render(source), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_all():
        print(p.relative_to(config.PROJECT_ROOT), file=sys.stderr)
