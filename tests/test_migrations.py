"""Migrations that change what an existing warehouse holds, applied to the state they were written for."""

from __future__ import annotations

import psycopg
import pytest

OLD_COUNTS = """create table intermediate.int_area_weekly_counts (area_code text, week_start date, iso_week text,
                indicator text, numerator integer, denominator integer, is_share boolean, note text)"""


@pytest.fixture
def scratch(warehouse_ready):
    from ewi import migrate, warehouse

    name = "ewi_migration_tests"
    with psycopg.connect(warehouse.dsn(name), autocommit=True) as conn:
        migrate.migrate(conn)
        yield conn
    with psycopg.connect(warehouse.dsn("postgres"), autocommit=True) as admin:
        admin.execute(f'drop database if exists "{name}" with (force)')


def _apply_again(conn, version: int) -> list[str]:
    from ewi import migrate

    conn.execute("delete from ewi_meta.schema_migrations where version = %s", (version,))
    return migrate.migrate(conn)


def test_0012_drops_the_whole_table_area_counts_an_older_build_left_and_keeps_the_incremental_one(scratch):
    scratch.execute("create schema if not exists intermediate")
    scratch.execute(OLD_COUNTS)
    assert _apply_again(scratch, 12) == ["0012_area_counts_incremental.sql"]
    assert scratch.execute("select to_regclass('intermediate.int_area_weekly_counts')").fetchone()[0] is None

    scratch.execute(OLD_COUNTS)
    scratch.execute("alter table intermediate.int_area_weekly_counts add column processed_at timestamptz")
    _apply_again(scratch, 12)
    assert scratch.execute("select to_regclass('intermediate.int_area_weekly_counts')").fetchone()[0] is not None
