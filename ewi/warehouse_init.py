"""Bring a warehouse to the state EWI expects: migrations applied, area register loaded."""

from __future__ import annotations

import csv

from psycopg import sql

from ewi import audit_chain, build_runs, config, migrate, warehouse
from ewi.settings import get_settings

AREA_COLUMNS = ("area_code", "area_name", "area_class", "pop_total", "pop_0_5", "pop_6_12",
                "pop_13_15", "pop_16_17", "pop_18_20")


def load_area_register(conn) -> int:
    """Upsert the area register (the dbt seed file) into ref.areas, which the ingest gate checks
    area codes against. Areas are never deleted here: published rows may still refer to them."""
    with open(config.AREAS_SEED, encoding="utf-8", newline="") as fh:
        rows = [tuple(r[c] for c in AREA_COLUMNS) for r in csv.DictReader(fh)]
    cols = ", ".join(AREA_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in AREA_COLUMNS[1:])
    with conn.cursor() as cur:
        cur.executemany(
            f"insert into ref.areas ({cols}) values ({', '.join(['%s'] * len(AREA_COLUMNS))}) "  # noqa: S608
            f"on conflict (area_code) do update set {updates}",
            rows,
        )
    return len(rows)


def init_warehouse() -> list[str]:
    with warehouse.connect() as conn:
        applied = migrate.migrate(conn)
        with conn.transaction():
            load_area_register(conn)
        with conn.transaction():
            # a table another migration added to schema audit is chained here, its rows as genesis
            audit_chain.ensure_chained(conn)
        # every command prepares the warehouse: the first one that reaches it records the builds
        # that could not record themselves (killed, or cut off by an outage)
        build_runs.settle(conn)
    return applied


#: The read-only login roles and the settings holding their passwords.
READ_ROLES = {"ewi_dashboard": "dashboard_db_password", "ewi_auditor": "auditor_db_password"}


def set_role_passwords() -> list[str]:
    """Give the read-only login roles the passwords from the environment (a deployed server uses
    password authentication; the embedded one trusts its local socket and needs none)."""
    done = []
    with warehouse.connect() as conn:
        settings = get_settings()
        for role, field in READ_ROLES.items():
            password = getattr(settings, field)
            if password is not None:
                conn.execute(sql.SQL("alter role {} password {}").format(
                    sql.Identifier(role), sql.Literal(password.get_secret_value())))
                done.append(role)
    return done
