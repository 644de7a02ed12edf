"""Lineage: the tables and files tasks declare as inlets and outlets.

Declared with airflow's lineage Table entity, which the OpenLineage provider turns into datasets
`<namespace>` / `<database>.<schema>.<table>`: TaskFlow tasks have no extractor of their own, so
the provider falls back to these.
"""

from __future__ import annotations

from ewi import config
from ewi.settings import get_settings
from ewi.sources import SOURCES

MART_TABLES = ("area_weekly_indicators", "area_trends", "municipality_weekly", "load_status", "area_alerts",
               "area_signals")
RAW_TABLES = tuple(source.raw_table for source in SOURCES.values())
PUBLISHED_TABLES = tuple(f"published.{m}" for m in MART_TABLES)


def lineage_namespace() -> str:
    return get_settings().lineage_namespace


def tables(*names: str) -> list:
    from airflow.providers.common.compat.lineage.entities import Table

    return [Table(database=config.warehouse_database(), cluster=lineage_namespace(), name=n) for n in names]


def landing_folder() -> list:
    from airflow.providers.common.compat.lineage.entities import File

    return [File(url=config.landing_dir().as_uri())]
