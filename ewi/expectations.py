"""Great Expectations suites, derived from the source registry.

The suites are kept as JSON in expectations/ so that auditors can read exactly what a delivery was
checked against; `python -m ewi.expectations` regenerates them and a test fails when the committed
JSON and the registry disagree. Values that depend on the delivery (its period, the birth years
allowed in it, the volume floor) are suite parameters, filled in at validation time.

Every check runs as SQL in PostgreSQL against the pending batch ({batch} is GX's placeholder for
it). Columns arrive as text, so types are checked with regular expressions and numeric rules cast
only values that already look like integers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ewi import config
from ewi.sources import INT_PATTERN, SOURCES, Source

SUITE_VERSION = 1


def suite_name(source: Source) -> str:
    return f"ewi_{source.name}"


def _param(name: str) -> dict:
    return {"$PARAMETER": name}


def _expectation(kind: str, notes: str, **kwargs) -> dict:
    return {"type": kind, "kwargs": kwargs, "meta": {"notes": notes}}


def _int(column: str) -> str:
    """The column as an integer where it looks like one, else NULL (never a cast error)."""
    # GX formats the query with str.format: the regex's braces must be doubled.
    pattern = INT_PATTERN.replace("{", "{{").replace("}", "}}")
    return f"(case when {column} ~ '{pattern}' then {column}::bigint end)"


def _rows_query(where: str, source: Source) -> str:
    return f"SELECT batch_id FROM {{batch}} WHERE {where}"  # noqa: S608 (trusted registry text)


def build_suite(source: Source) -> dict:
    exps: list[dict] = [
        _expectation(
            "expect_table_columns_to_match_set",
            "Exactly the contract's columns (plus the loader's batch id).",
            column_set=["batch_id", *source.column_names],
            exact_match=True,
        ),
        _expectation(
            "expect_table_row_count_to_be_between",
            "Volume: at least half the median row count of the source's last 8 published batches.",
            min_value=_param("min_rows"),
            max_value=None,
        ),
    ]
    for col in source.columns:
        exps.append(_expectation(
            "expect_column_values_to_not_be_null", f"{col.name} is required.", column=col.name))
        if col.pattern:
            exps.append(_expectation(
                "expect_column_values_to_match_regex",
                f"{col.name}: {col.description}", column=col.name, regex=col.pattern))
        if col.allowed_values:
            exps.append(_expectation(
                "expect_column_values_to_be_in_set",
                f"{col.name} takes only the contract's values.",
                column=col.name, value_set=list(col.allowed_values)))
        if col.minimum is not None or col.maximum is not None:
            bounds = []
            if col.minimum is not None:
                bounds.append(f"{_int(col.name)} < {col.minimum}")
            if col.maximum is not None:
                bounds.append(f"{_int(col.name)} > {col.maximum}")
            exps.append(_expectation(
                "unexpected_rows_expectation",
                f"{col.name} between {col.minimum} and {col.maximum if col.maximum is not None else '∞'}.",
                unexpected_rows_query=_rows_query(" OR ".join(bounds), source),
                description=f"{col.name} out of range",
            ))

    exps.append(_expectation(
        "expect_column_values_to_be_in_set",
        f"{source.period_column} lies inside the delivery's ISO week.",
        column=source.period_column, value_set=_param("period_values")))
    exps.append(_expectation(
        "expect_column_values_to_be_in_set",
        f"Age in the period year is {source.age_range[0]}–{source.age_range[1]}.",
        column="birth_year", value_set=_param("birth_years")))
    exps.append(_expectation(
        "unexpected_rows_expectation",
        "home_area_code exists in the area register (ref.areas).",
        unexpected_rows_query=_rows_query(
            "home_area_code IS NOT NULL AND home_area_code NOT IN (SELECT area_code FROM ref.areas)", source),
        description="home_area_code not in the area register",
    ))

    if len(source.key) == 1:
        exps.append(_expectation(
            "expect_column_values_to_be_unique", f"{source.key[0]} is unique in the delivery.",
            column=source.key[0]))
    else:
        exps.append(_expectation(
            "expect_compound_columns_to_be_unique", f"({', '.join(source.key)}) is unique in the delivery.",
            column_list=list(source.key)))
    if source.key_scope == "source":
        key = source.key[0]
        # A key already published for another period is a clash; one published for this same
        # period is about to be replaced by this delivery (a correction), so it is not.
        exps.append(_expectation(
            "unexpected_rows_expectation",
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
            "unexpected_rows_expectation",
            "valid + invalid absence never exceeds scheduled minutes.",
            unexpected_rows_query=_rows_query(
                f"{_int('valid_absence_minutes')} + {_int('invalid_absence_minutes')} > {_int('scheduled_minutes')}",
                source),
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
