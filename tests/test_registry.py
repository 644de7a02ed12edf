"""The source registry is the one definition of each extract: everything derived from it must
agree with it, and it must agree with the contract."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ewi import expectations
from ewi.sources import SOURCES, parse_file_name

CONTRACT = Path(__file__).resolve().parents[2] / "shared" / "contracts" / "SOURCES.md"


def contract_columns() -> dict[str, list[str]]:
    """Column names per source, read from the tables of ../shared/contracts/SOURCES.md."""
    text = CONTRACT.read_text(encoding="utf-8")
    out = {}
    for name in SOURCES:
        section = text.split(f"## {name}", 1)[1].split("\n## ", 1)[0]
        out[name] = re.findall(r"^\| ([a-z_]+) \|", section, re.M)
        out[name] = [c for c in out[name] if c != "column"]
    return out


@pytest.mark.skipif(not CONTRACT.exists(), reason="../shared/contracts is not beside this checkout")
def test_registry_columns_equal_the_contract():
    for name, columns in contract_columns().items():
        assert list(SOURCES[name].column_names) == columns, name


@pytest.mark.skipif(not CONTRACT.exists(), reason="../shared/contracts is not beside this checkout")
def test_allowed_values_equal_the_contract():
    text = CONTRACT.read_text(encoding="utf-8")
    for source in SOURCES.values():
        for col in source.columns:
            if col.allowed_values:
                row = re.search(rf"^\| {col.name} \| text \| (.+) \|$", text, re.M)[1]
                assert [v.strip() for v in row.split(",")] == list(col.allowed_values)


def test_committed_suites_are_generated_from_the_registry():
    for source in SOURCES.values():
        committed = json.loads(expectations.suite_path(source).read_text(encoding="utf-8"))
        assert committed == json.loads(expectations.render(source)), (
            f"expectations/{source.name}.json is stale: run python -m ewi.expectations")


def test_every_column_is_required_and_typed_in_its_suite():
    for source in SOURCES.values():
        suite = expectations.build_suite(source)
        not_null = {e["kwargs"]["column"] for e in suite["expectations"]
                    if e["type"] == "expect_column_values_to_not_be_null"}
        assert not_null == set(source.column_names)
        typed = {e["kwargs"]["column"] for e in suite["expectations"]
                 if e["type"] in ("expect_column_values_to_match_regex", "expect_column_values_to_be_in_set",
                                  "expect_column_values_to_be_in_type_list")}
        assert typed == set(source.column_names)


def test_suite_patterns_are_the_registry_patterns_in_cheap_form():
    """A `^[class]{n}$` pattern is checked as `^[class]+$` plus a length rule: the same strings pass."""
    for source in SOURCES.values():
        for col in source.columns:
            if not col.pattern:
                continue
            regex, low, high = expectations.sql_pattern(col.pattern)
            for value in ("0" * 8, "a" * 64, "2081C1010", "A" * 64, "a" * 63, "", "12345678x", "x" * 41, "ab-_9"):
                cheap = re.fullmatch(regex.strip("^$"), value) is not None and (
                    low is None or low <= len(value) <= high)
                assert cheap == (re.fullmatch(col.pattern.strip("^$"), value) is not None), (col.name, value)


def test_migrated_tables_match_the_registry(db):
    for source in SOURCES.values():
        for schema in ("pending", "quarantine", "raw"):
            cols = [r[0] for r in db.execute(
                "select column_name from information_schema.columns where table_schema = %s and table_name = %s "
                "order by ordinal_position", (schema, source.name)).fetchall()]
            business = [c for c in cols if c not in ("batch_id", "quarantined_at", "published_at")]
            assert business == list(source.column_names), (schema, source.name)
        types = dict(db.execute(
            "select column_name, data_type from information_schema.columns where table_schema = 'raw' "
            "and table_name = %s", (source.name,)).fetchall())
        for col in source.columns:
            assert types[col.name] == col.sql_type, (source.name, col.name)


@pytest.mark.parametrize(("name", "ok"), [
    ("school_absence_2026-W47_20261123T0612.csv", True),
    ("referrals_2026-W47_20261123T0600.csv", True),
    ("contacts_2026-W53_20270104T0600.csv", True),   # 2026 has 53 ISO weeks
    ("contacts_2025-W53_20260105T0600.csv", False),  # 2025 has 52
    ("contacts_2026-W47_20261123T0600.CSV", False),
    ("contacts_2026-W47_20261123T0600.csv.tmp", False),
    ("pupils_2026-W47_20261123T0600.csv", False),
    ("contacts_2026-W47_20261323T0600.csv", False),
    ("../contacts_2026-W47_20261123T0600.csv", False),
])
def test_file_name_pattern(name, ok):
    assert (parse_file_name(name) is not None) is ok
