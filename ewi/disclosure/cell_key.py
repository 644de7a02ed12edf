"""The audit of the Cell Key Method (dbt var disclosure_method: cell_key; macros/cell_key.sql).

Nothing is suppressed, so there is no interval to compute; instead it checks what the method promises:
- the perturbation table: for every value its key ranges cover [0, 1) without gap or overlap, the
  noise is unbiased (its mean over the key is 0), no value is published as 1 to min_count - 1 and
  none below 0;
- the published marts: no count from 1 to min_count - 1 anywhere (weekly cells, municipality totals,
  alert observed values);
- bounded perturbation: every published weekly count differs from its true count by a noise the
  table allows for that value (the municipality's true count being the sum of the areas')."""

from __future__ import annotations

import psycopg
from psycopg import sql

#: Slack for the sums of key ranges and noise written with decimals.
_EPSILON = 1e-9


def table_problems(table: list[list], min_count: int) -> list[str]:
    problems = []
    by_value: dict[int, list[tuple[float, float, int]]] = {}
    for value, low, high, noise in table:
        by_value.setdefault(int(value), []).append((float(low), float(high), int(noise)))
    for value, ranges in sorted(by_value.items()):
        ranges.sort()
        edge = 0.0
        for low, high, noise in ranges:
            if abs(low - edge) > _EPSILON or high <= low:
                problems.append(f"cell_key_ptable: value {value}: key ranges leave a gap or overlap at {edge:g}")
            edge = high
            if 1 <= value + noise < min_count or value + noise < 0:
                problems.append(f"cell_key_ptable: value {value} can be published as {value + noise}")
        if abs(edge - 1.0) > _EPSILON:
            problems.append(f"cell_key_ptable: value {value}: key ranges end at {edge:g}, not 1")
        bias = sum((high - low) * noise for low, high, noise in ranges)
        if abs(bias) > 1e-6:
            problems.append(f"cell_key_ptable: value {value}: noise has mean {bias:g}, not 0")
    if not by_value or min(by_value) != 1 or sorted(by_value) != list(range(1, max(by_value) + 1)):
        problems.append("cell_key_ptable: needs a row for every value from 1 to its largest")
    return problems


def published_problems(conn: psycopg.Connection, schemas: dict[str, str], table: list[list],
                       min_count: int) -> list[str]:
    problems = []
    top = max(int(row[0]) for row in table)
    allowed = {(int(v), int(v) + int(n)) for v, _, _, n in table}
    checks = [("area_weekly_indicators", ("numerator", "denominator")),
              ("municipality_weekly", ("numerator", "denominator")),
              ("area_alerts", ("observed",))]
    for name, columns in checks:
        if name not in schemas:
            continue
        for column in columns:
            small = conn.execute(sql.SQL("select count(*) from {} where {} between 1 and %s").format(
                sql.Identifier(schemas[name], name), sql.Identifier(column)), (min_count - 1,)).fetchone()[0]
            if small:
                problems.append(f"{name}.{column}: {small} published counts between 1 and {min_count - 1}")
    pairs = conn.execute(sql.SQL(
        """select distinct c.numerator, p.numerator, c.denominator, p.denominator, c.is_share
           from intermediate.int_area_weekly_counts as c
           join {} as p using (area_code, week_start, indicator)""").format(
        sql.Identifier(schemas["area_weekly_indicators"], "area_weekly_indicators"))).fetchall()
    totals = conn.execute(sql.SQL(
        """select distinct c.numerator, p.numerator, c.denominator, p.denominator, c.is_share
           from (select week_start, indicator, bool_and(is_share) as is_share, sum(numerator) as numerator,
                        sum(denominator) as denominator
                 from intermediate.int_area_weekly_counts group by 1, 2) as c
           join {} as p using (week_start, indicator)""").format(
        sql.Identifier(schemas["municipality_weekly"], "municipality_weekly"))).fetchall()
    outside = 0
    for true_n, published_n, true_d, published_d, is_share in pairs + totals:
        for true, published in ((true_n, published_n), *(((true_d, published_d),) if is_share else ())):
            if true is None or published is None:
                continue
            value = min(true, top)
            if (published != 0) if true == 0 else (value, published - true + value) not in allowed:
                outside += 1
    if outside:  # how many, never which values (they would give the true counts away)
        problems.append(f"{outside} kinds of published count are no perturbation the table allows")
    return problems
