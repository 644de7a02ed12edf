"""Static checks of the dbt project against the source registry (no warehouse needed)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ewi import config
from ewi.sources import SOURCES

MODELS = config.DBT_PROJECT_DIR / "models"
#: Columns every raw table has beside the contract's: the delivery and when it was published.
RAW_EXTRA = ("batch_id", "published_at")


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _raw_source() -> dict:
    sources = _yaml(MODELS / "staging" / "_sources.yml")["sources"]
    return next(s for s in sources if s["name"] == "raw")


def test_dbt_sources_match_the_registry():
    tables = {t["name"]: t for t in _raw_source()["tables"]}
    assert set(tables) == set(SOURCES)
    for name, source in SOURCES.items():
        columns = [c["name"] for c in tables[name]["columns"]]
        assert sorted(columns) == sorted((*source.column_names, *RAW_EXTRA)), name
        types = {c["name"]: c.get("data_type") for c in tables[name]["columns"]}
        for column in source.columns:
            assert types[column.name] == column.sql_type, (name, column.name)


def test_raw_sources_have_freshness():
    cfg = _raw_source()["config"]
    assert cfg["loaded_at_field"] == "published_at"
    assert cfg["freshness"]["warn_after"] == {"count": 8, "period": "day"}
    assert cfg["freshness"]["error_after"] == {"count": 15, "period": "day"}


def test_staging_models_select_every_registry_column():
    for name, source in SOURCES.items():
        sql = (MODELS / "staging" / f"stg_{name}.sql").read_text(encoding="utf-8")
        for column in source.column_names:
            assert column in sql, (name, column)


def test_every_model_is_documented():
    documented = {m["name"] for doc in MODELS.rglob("*.yml") for m in (_yaml(doc) or {}).get("models") or []}
    missing = sorted(sql.stem for sql in MODELS.rglob("*.sql") if sql.stem not in documented)
    assert not missing


def test_staging_intermediate_and_marts_have_one_yaml_per_model():
    for layer in ("staging", "intermediate", "marts"):
        for sql in (MODELS / layer).glob("*.sql"):
            assert sql.with_suffix(".yml").exists(), sql.name


def test_published_models_enforce_contracts_with_typed_columns():
    for doc in (MODELS / "marts").glob("*.yml"):
        for model in _yaml(doc)["models"]:
            assert model["config"]["contract"]["enforced"] is True, model["name"]
            untyped = [c["name"] for c in model["columns"] if not c.get("data_type")]
            assert not untyped, (model["name"], untyped)


LAYERS = ("staging", "intermediate", "marts")


def test_every_model_sits_in_a_layer():
    """staging -> intermediate -> marts: a model in any other folder has no layer's schema, materialization
    or grants (the alert models once sat in models/alerts and set all three themselves)."""
    outside = sorted(str(sql.relative_to(MODELS)) for sql in MODELS.rglob("*.sql") if sql.parent.name not in LAYERS)
    assert not outside


def test_only_staging_models_read_sources():
    readers = sorted(str(sql.relative_to(MODELS)) for sql in MODELS.rglob("*.sql")
                     if "source(" in sql.read_text(encoding="utf-8") and sql.parent.name != "staging")
    assert not readers


def test_sources_are_declared_once_in_staging_sources_yml():
    declaring = sorted(str(doc.relative_to(MODELS)) for doc in MODELS.rglob("*.yml") if (_yaml(doc) or {}).get("sources"))
    assert declaring == ["staging/_sources.yml"]
    declared = {(s["name"], t["name"]) for s in _yaml(MODELS / "staging" / "_sources.yml")["sources"] for t in s["tables"]}
    read = {m for sql in MODELS.rglob("*.sql")
            for m in re.findall(r"source\('(\w+)', '(\w+)'\)", sql.read_text(encoding="utf-8"))}
    assert read == declared


def test_schema_and_grants_are_set_by_folder():
    """dbt_project.yml gives each layer its schema, and the marts their grants; no model repeats them."""
    inline = sorted(sql.name for sql in MODELS.rglob("*.sql")
                    if re.search(r"config\([^)]*\b(schema|grants)\s*=", sql.read_text(encoding="utf-8"), re.S))
    assert not inline
