"""Incremental builds equal a full refresh, and a new week costs that week.

Synthetic extracts go through the real gate in the order deliveries arrive in practice: weeks one
after another, a school week that arrives late (after the next one), and a school week that never
arrives while the other sources go on. After each delivery an incremental build runs; at the end every
intermediate table, the Farrington results and every published mart must hold exactly what a full
refresh of the same data computes (processed_at aside, which says which build wrote a row).
"""

from __future__ import annotations

import pytest

from ewi.sources import parse_file_name

pytestmark = pytest.mark.slow

WEEKS = 16
END_WEEK = "2026-W14"
#: Tables compared with a full refresh, and their columns that only say which build wrote a row.
COMPARED = [
    "intermediate.int_pupil_weeks", "intermediate.int_absence_person_weeks",
    "intermediate.int_person_signal_weeks", "intermediate.int_weeks", "intermediate.int_area_weekly_counts",
    "intermediate.alert_series", "intermediate.alert_ears", "alerts.farrington_results", "alerts.glrnb_results",
    "published.area_weekly_indicators", "published.municipality_weekly", "published.area_trends",
    "published.area_alerts", "published.load_status",
]
BUILD_MARKS = {"processed_at", "computed_at"}
WAREHOUSE_DB, SYNTH_SEED = "ewi_incremental_tests", 11


@pytest.fixture(scope="module")
def deliveries(module_db, synthetic_extracts):
    by_week: dict[str, dict[str, object]] = {}
    for path in sorted(synthetic_extracts.glob("*.csv")):
        delivery = parse_file_name(path.name)
        by_week.setdefault(delivery.period, {})[delivery.source.name] = path
    return {"weeks": sorted(by_week), "files": by_week, "conn": module_db}


def _ingest(paths) -> None:
    from ewi.ingest import ingest_files

    results = ingest_files(list(paths), docs_index=False)
    assert all(r.status in ("published", "quarantined") for r in results), [r.status for r in results]


def _build(full_refresh: bool = False) -> dict:
    from ewi import transform

    summary = transform.build(full_refresh=full_refresh)
    assert summary["success"], summary["failures"]
    return summary


def _rebuilt_weeks(conn, table: str) -> list[str]:
    """The ISO weeks of the rows the last build wrote into an incremental model."""
    rows = conn.execute(
        f"select distinct to_char(week_start, 'IYYY-\"W\"IW') from {table} "  # noqa: S608
        f"where processed_at = (select max(processed_at) from {table}) order by 1").fetchall()
    return [r[0] for r in rows]


def _snapshot(conn) -> dict[str, list[tuple]]:
    tables = {}
    for table in COMPARED:
        schema, name = table.split(".")
        columns = [c for (c,) in conn.execute(
            "select column_name from information_schema.columns where table_schema = %s and table_name = %s "
            "order by ordinal_position", (schema, name)).fetchall() if c not in BUILD_MARKS]
        assert columns, table
        listed = ", ".join(f'"{c}"' for c in columns)
        tables[table] = conn.execute(f"select {listed} from {table} order by {listed}").fetchall()  # noqa: S608
    return tables


def test_incremental_builds_equal_a_full_refresh_and_a_new_week_costs_that_week(deliveries):
    conn, weeks, files = deliveries["conn"], deliveries["weeks"], deliveries["files"]
    late, missing = weeks[8], weeks[12]  # a school week delivered late; one never delivered
    first = weeks[:10]
    _ingest(p for w in first for s, p in files[w].items() if not (w == late and s == "school_absence"))
    _build()

    # a new week costs that week: each per-person model recomputes it alone (reading its window)
    _ingest(files[weeks[10]].values())
    _build()
    for table in ("intermediate.int_pupil_weeks", "intermediate.int_absence_person_weeks",
                  "intermediate.int_person_signal_weeks"):
        assert _rebuilt_weeks(conn, table) == [weeks[10]], table
    # a school week delivered late, after two later ones: it and every later week are recomputed
    _ingest([files[late]["school_absence"]])
    _build()
    for table in ("intermediate.int_pupil_weeks", "intermediate.int_absence_person_weeks"):
        assert _rebuilt_weeks(conn, table) == weeks[8:11], table

    # a new week, and the next one without its school delivery, which never comes
    _ingest([*files[weeks[11]].values(), *(p for s, p in files[missing].items() if s != "school_absence")])
    _build()
    assert _rebuilt_weeks(conn, "intermediate.int_absence_person_weeks") == [weeks[11]]

    # the week after the gap: the pupil weeks are that week's; the absence model computes the gap
    # week too, which came into range without rows of its own (its pupils are those of the weeks
    # before it, in its trailing window), and so does the signal model, which reads those flags
    _ingest(files[weeks[13]].values())
    _build()
    assert _rebuilt_weeks(conn, "intermediate.int_pupil_weeks") == [weeks[13]]
    for table in ("intermediate.int_absence_person_weeks", "intermediate.int_person_signal_weeks"):
        assert _rebuilt_weeks(conn, table) == [missing, weeks[13]], table
    for week in weeks[14:]:
        _ingest(files[week].values())
        _build()

    incremental = _snapshot(conn)
    _build(full_refresh=True)
    full = _snapshot(conn)
    for table in COMPARED:
        # compared whole, reported by count: pytest's diff of these rows would print pseudonyms
        equal = incremental[table] == full[table]
        differing = len(set(incremental[table]) ^ set(full[table]))
        assert equal, f"{table}: {differing} rows differ from a full refresh"
    assert sum(len(rows) for rows in full.values()) > 0
