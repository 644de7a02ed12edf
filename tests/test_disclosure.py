"""Disclosure by differencing, on a warehouse built from synthetic extracts by the real ingest and
the real gated dbt build: what the dashboard role can SELECT must not give back a suppressed cell,
the disclosure audit runs in the build's gate and stops a leaking build from publishing, and the
secondary suppression's sum-below-minimum rule is pinned on built data."""

from __future__ import annotations

import shutil
from collections import defaultdict
from datetime import timedelta

import psycopg
import pytest

pytestmark = pytest.mark.slow

WEEKS = 20
END_WEEK = "2026-W10"
MIN_COUNT = 5  # SOURCES.md: counts below 5 are suppressed
WINDOW = {"referrals": 3, "contacts": 3}  # docs/alerts.md: the watched 3-week sums
WAREHOUSE_DB, SYNTH_SEED = "ewi_disclosure", 5


@pytest.fixture(scope="module")
def built(module_warehouse, synthetic_extracts):
    from ewi import transform
    from ewi.ingest import ingest_files

    ingest_files(sorted(synthetic_extracts.glob("*.csv")))
    summary = transform.build()
    return {"build": summary, "dsn": module_warehouse}


def _as_dashboard(dsn: str) -> psycopg.Connection:
    return psycopg.connect(psycopg.conninfo.make_conninfo(dsn, user="ewi_dashboard"), autocommit=True)


def _differencing_attack(rc: psycopg.Connection) -> dict[tuple, int]:
    """The attack of the issue, as a reader would run it: every published sum whose parts are all
    published but one gives that one back; repeat with what was learnt. Sums: an alert's observed
    (its window of weekly cells), the municipality total (the week's areas), and EARS C1's expected
    (7 x the mean of the watched sums of t-7..t-1). Returns the suppressed cells it recovers."""
    known: dict[tuple, int] = {}
    suppressed: set[tuple] = set()
    weeks_of: dict[tuple, list] = defaultdict(list)
    for area, indicator, week, numerator in rc.execute(
            "select area_code, indicator, week_start, numerator from published.area_weekly_indicators "
            "order by week_start").fetchall():
        key = (area, indicator, week)
        weeks_of[(area, indicator)].append(week)
        if numerator is None:
            suppressed.add(key)
        else:
            known[key] = numerator
    sums: list[tuple[list[tuple], float]] = []
    by_week = defaultdict(list)
    for key in list(known) + list(suppressed):
        by_week[(key[1], key[2])].append(key)
    for indicator, week, numerator in rc.execute(
            "select indicator, week_start, numerator from published.municipality_weekly "
            "where numerator is not null").fetchall():
        sums.append((by_week[(indicator, week)], numerator))

    def window(area, indicator, week):
        n = WINDOW.get(indicator, 1)
        return [(area, indicator, week - timedelta(days=7 * i)) for i in range(n)]

    no_data = set()
    rows = rc.execute("select area_code, indicator, week_start, method, observed, expected, status "
                      "from published.area_alerts").fetchall()
    for area, indicator, week, _, _, _, status in rows:
        if status == "no_data":
            no_data.add((area, indicator, week))
    for area, indicator, week, method, observed, expected, _ in rows:
        cells = window(area, indicator, week)
        if observed is not None and all(c in known or c in suppressed for c in cells):
            sums.append((cells, observed))
        if method == "ears_c1" and expected is not None:
            base = [week - timedelta(days=7 * i) for i in range(1, 8)]
            base = [w for w in base if (area, indicator, w) not in no_data]
            parts = [c for w in base for c in window(area, indicator, w)]
            if all(c in known or c in suppressed for c in parts):
                sums.append((parts, round(float(expected) * len(base))))
    recovered: dict[tuple, int] = {}
    progress = True
    while progress:
        progress = False
        for cells, total in sums:
            unknown = [c for c in cells if c not in known]
            if len(unknown) == 1:
                value = int(round(total - sum(known[c] for c in cells if c in known)))
                known[unknown[0]] = recovered[unknown[0]] = value
                progress = True
    return recovered


def test_the_build_passed_its_disclosure_audit(built):
    summary = built["build"]
    assert summary["success"] and summary["published"], summary["failures"]
    assert any(p["phase"] == "disclosure audit" for p in summary["timings"]["phases"])
    with psycopg.connect(built["dsn"], autocommit=True) as conn:
        status = conn.execute("select status from audit.dbt_test_results where run_id = %s "
                              "and test_name = 'disclosure_audit'", (summary["run_id"],)).fetchone()
    assert status == ("pass",)


def test_differencing_recovers_no_suppressed_cell(built):
    with _as_dashboard(built["dsn"]) as rc:
        recovered = _differencing_attack(rc)
        suppressed = rc.execute("select count(*) from published.area_weekly_indicators "
                                "where is_suppressed").fetchone()[0]
    assert suppressed > 0
    assert len(recovered) == 0, f"{len(recovered)} of {suppressed} suppressed cells recovered by differencing"


def test_alert_figures_of_a_window_with_a_suppressed_cell_are_withheld(built):
    """On built data: every observed of a referrals/contacts alert row is a sum of three published
    weekly cells (checked against them), and no explanation gives a number where the column is NULL."""
    with _as_dashboard(built["dsn"]) as rc:
        cells = {(a, i, w): (n, s) for a, i, w, n, s in rc.execute(
            "select area_code, indicator, week_start, numerator, is_suppressed "
            "from published.area_weekly_indicators").fetchall()}
        rows = rc.execute("select area_code, indicator, week_start, observed, explanation_en "
                          "from published.area_alerts where indicator in ('referrals', 'contacts')").fetchall()
    shown = withheld = 0
    for area, indicator, week, observed, explanation in rows:
        window = [cells.get((area, indicator, week - timedelta(days=7 * i))) for i in range(3)]
        if observed is not None:
            shown += 1
            assert all(c is not None and not c[1] for c in window)
            assert observed == sum(c[0] for c in window)
        elif any(c is not None and c[1] for c in window):
            withheld += 1
            assert "fewer than" not in explanation
            if " observed, " in explanation:
                assert ": not published observed, " in explanation
    assert shown > 0 and withheld > 0


def test_secondary_suppression_sum_below_minimum_on_built_data(built):
    """Pins the rule 'suppressed cells of a week and indicator that sum to less than the minimum get
    another cell suppressed' on real built data: weeks where the small cells alone sum to 1-4 beside a
    published municipality total exist, and in every week whose total is published the suppressed
    cells' true values sum to at least the minimum (so the total minus the published areas is >= 5)."""
    with psycopg.connect(built["dsn"], autocommit=True) as conn:
        groups = conn.execute(
            """select p.indicator, p.week_start,
                      count(*) filter (where c.numerator between 1 and %(m)s - 1) as small,
                      coalesce(sum(c.numerator) filter (where c.numerator between 1 and %(m)s - 1), 0),
                      count(*) filter (where p.numerator is null) as suppressed,
                      coalesce(sum(c.numerator) filter (where p.numerator is null), 0) as suppressed_sum
               from published.area_weekly_indicators as p
               join intermediate.int_area_weekly_counts as c using (area_code, week_start, indicator)
               join published.municipality_weekly as m using (week_start, indicator)
               where m.numerator is not null
               group by 1, 2""", {"m": MIN_COUNT}).fetchall()
    needed = [g for g in groups if g[2] >= 2 and g[3] < MIN_COUNT]
    assert needed, "the data has no week where the small cells sum to less than the minimum"
    for indicator, week, _, _, suppressed, suppressed_sum in groups:
        if suppressed:
            assert suppressed >= 2 and suppressed_sum >= MIN_COUNT, (indicator, week)
    for indicator, week, small, _, suppressed, _ in needed:
        assert suppressed > small, (indicator, week)


def test_the_audit_command_finds_one_leaked_observed_value(built, capsys):
    """`ewi disclosure-audit` on published: passes; then with one withheld observed value put back
    (a window of exactly one suppressed cell, so that cell follows) it fails and names the figure."""
    from ewi import cli
    from ewi.errors import EXIT_GATE, EXIT_OK

    assert cli.main(["disclosure-audit"]) == EXIT_OK
    with psycopg.connect(built["dsn"], autocommit=True) as conn:
        row = conn.execute(
            """select a.area_code, a.indicator, a.week_start, a.method, s.observed
               from published.area_alerts as a
               join intermediate.alert_series as s using (area_code, indicator, week_start)
               join lateral (
                   select count(*) filter (where c.is_suppressed) as suppressed, count(*) as cells
                   from published.area_weekly_indicators as c
                   where c.area_code = a.area_code and c.indicator = a.indicator
                     and c.week_start between a.week_start - 14 and a.week_start) as w on true
               where a.indicator = 'contacts' and a.observed is null and s.observed is not null
                 and w.suppressed = 1 and w.cells = 3
               limit 1""").fetchone()
        assert row is not None
        key = dict(zip(("area_code", "indicator", "week_start", "method"), row[:4], strict=True))
        where = "area_code = %(area_code)s and indicator = %(indicator)s and week_start = %(week_start)s " \
                "and method = %(method)s"
        conn.execute(f"update published.area_alerts set observed = %(observed)s where {where}",  # noqa: S608
                     {**key, "observed": int(row[4])})
        try:
            capsys.readouterr()
            assert cli.main(["disclosure-audit"]) == EXIT_GATE
            out = capsys.readouterr().out
        finally:
            conn.execute(f"update published.area_alerts set observed = null where {where}", key)  # noqa: S608
    assert "FAILED" in out and "area_alerts.observed" in out and "contacts" in out


def _build_stopped_by_the_disclosure_audit(conn, published_rows: str, message_part: str) -> dict:
    """Builds, and checks that the disclosure audit alone failed the build (its message naming
    message_part) and that nothing was published: the rows `published_rows` selects are as before.
    Returns the build's summary."""
    from ewi import transform

    before = conn.execute(published_rows).fetchall()
    summary = transform.build()
    assert not summary["success"] and not summary["published"]
    assert [f["node"] for f in summary["failures"]] == ["test.ewi.disclosure_audit"]
    assert message_part in summary["failures"][0]["message"]
    assert conn.execute(published_rows).fetchall() == before
    return summary


def test_a_leaking_build_fails_the_audit_and_publishes_nothing(built, tmp_path, monkeypatch):
    """The alert rule switched off in a copy of the dbt project (observed shown unless it is 1-4, as
    before): the build's data tests pass, the disclosure audit fails it, `published` is unchanged
    and the failure is recorded with the other checks."""
    from ewi import config

    project = tmp_path / "dbt_project"
    shutil.copytree(config.DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    model = project / "models" / "marts" / "area_alerts.sql"
    text = model.read_text(encoding="utf-8")
    leaking = text.replace("or coalesce(h.window_withheld, true)", "").replace(
        "coalesce(case r.method", "false and coalesce(case r.method")
    assert leaking != text
    model.write_text(leaking, encoding="utf-8")
    monkeypatch.setattr(config, "DBT_PROJECT_DIR", project)
    with psycopg.connect(built["dsn"], autocommit=True) as conn:
        summary = _build_stopped_by_the_disclosure_audit(
            conn, "select * from published.area_alerts order by 1, 3, 5, 6", "area_alerts")
        recorded = conn.execute("select status, failures from audit.dbt_test_results where run_id = %s "
                                "and test_name = 'disclosure_audit'", (summary["run_id"],)).fetchone()
    assert recorded[0] == "fail" and recorded[1] > 0


def _project_copy(tmp_path, edit) -> object:
    from ewi import config

    project = tmp_path / "dbt_project"
    shutil.copytree(config.DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    settings = project / "dbt_project.yml"
    text = settings.read_text(encoding="utf-8")
    changed = edit(text.replace("  disclosure_method: suppression\n", "  disclosure_method: cell_key\n"))
    assert changed != text
    settings.write_text(changed, encoding="utf-8")
    return project


def _published_small_cell_by_hand(true: int, cell_key: float) -> int:
    """The documented table (dbt_project.yml, cell_key_ptable) for 1-4: 5 when the key is at least
    1 - value/5 (so with probability value/5: unbiased), else 0."""
    return 5 if cell_key >= 1 - true / 5 else 0


def test_the_cell_key_method_perturbs_every_count_and_passes_its_audit(built, tmp_path, monkeypatch):
    """disclosure_method cell_key: nothing suppressed, no count of 1-4 published, and each referral
    cell of 1-4 published as the table says for its cell key, computed here from the persons' record
    keys (md5 of salt and pseudonym, as documented); the build's audit is the Cell Key Method's."""
    import hashlib

    from ewi import config, transform

    monkeypatch.setattr(config, "DBT_PROJECT_DIR", _project_copy(tmp_path, lambda t: t))
    summary = transform.build()
    assert summary["success"] and summary["published"], summary["failures"]
    with psycopg.connect(built["dsn"], autocommit=True) as conn:
        assert conn.execute("select status from audit.dbt_test_results where run_id = %s "
                            "and test_name = 'disclosure_audit'", (summary["run_id"],)).fetchone() == ("pass",)
        assert conn.execute("""select count(*) filter (where is_suppressed or numerator is null),
                                      count(*) filter (where numerator between 1 and 4)
                               from published.area_weekly_indicators""").fetchone() == (0, 0)
        published = {(a, w): n for a, w, n in conn.execute(
            "select area_code, week_start, numerator from published.area_weekly_indicators "
            "where indicator = 'referrals'").fetchall()}
        keys: dict[tuple, float] = defaultdict(float)
        counts: dict[tuple, int] = defaultdict(int)
        for area, week, pseudonym in conn.execute(
                "select referral_area_code, week_start, person_pseudonym from intermediate.int_person_signal_weeks "
                "where has_referral").fetchall():
            digest = hashlib.md5(("ewi-cell-key" + pseudonym).encode()).hexdigest()  # noqa: S324 - a key, not a secret
            keys[(area, week)] += int(digest[:8], 16) / 2**32
            counts[(area, week)] += 1
    small = [cell for cell, n in counts.items() if 1 <= n <= 4]
    assert len(small) > 20
    fives = 0
    for cell in small:
        expected = _published_small_cell_by_hand(counts[cell], keys[cell] % 1)
        assert published[cell] == expected, cell
        fives += expected == 5
    assert 0 < fives < len(small)


def test_a_biased_perturbation_table_fails_the_cell_key_audit(built, tmp_path, monkeypatch):
    from ewi import config

    project = _project_copy(tmp_path, lambda t: t.replace("    - [7, 0.95, 1.0, 2]\n", "    - [7, 0.95, 1.0, 3]\n"))
    monkeypatch.setattr(config, "DBT_PROJECT_DIR", project)
    with psycopg.connect(built["dsn"], autocommit=True) as conn:
        _build_stopped_by_the_disclosure_audit(conn, "select * from published.area_weekly_indicators order by 1, 3, 5",
                                               "value 7: noise has mean 0.05, not 0")
