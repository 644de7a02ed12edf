"""The area score (issue 18): its combination methods against published reference values, its
evidence rules, synth's co-occurring rises, and the real pipeline (synth -> ingest -> gated build)
publishing area-score rows and signals that the disclosure audit accepts, and rejecting a leak."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import psycopg
import pytest
from scipy import integrate, stats

from ewi.alerts import area_score

# ---------------------------------------------------------------------------------------------
# Combination methods against reference values
# ---------------------------------------------------------------------------------------------


def test_fisher_without_correlation_is_fishers_method_as_poolr_and_scipy_give_it():
    """Independent tests: Brown's method has c = 1 and f = 2k, i.e. Fisher's method. poolr's quick
    start guide (README: fisher(c(0.02, 0.03, 0.08, 0.20)) gives 23.107 ~ chi-square(8)) and
    scipy.stats.combine_pvalues give the same."""
    p = np.array([0.02, 0.03, 0.08, 0.20])
    combined, x, c, f = area_score.fisher_kost(p, np.eye(4))
    assert x == pytest.approx(23.107, abs=5e-4)
    assert (c, f) == (1.0, 8.0)
    reference = stats.combine_pvalues(p, method="fisher")
    assert combined == pytest.approx(reference.pvalue, rel=1e-12)
    assert x == pytest.approx(reference.statistic, rel=1e-12)


def test_stouffer_without_correlation_is_scipys_stouffer():
    p = np.array([0.02, 0.03, 0.08, 0.20])
    combined, z = area_score.stouffer_correlated(area_score.normal_scores(p), np.eye(4))
    reference = stats.combine_pvalues(p, method="stouffer")
    assert z == pytest.approx(reference.statistic, rel=1e-12)
    assert combined == pytest.approx(reference.pvalue, rel=1e-12)


def _exact_covariance(rho: float) -> float:
    """cov(-2 ln p1, -2 ln p2) for p_i = 1 - Phi(Z_i), (Z1, Z2) standard bivariate normal with
    correlation rho, by numerical integration (what Kost & McDermott's polynomial approximates)."""
    def g(z):
        return -2 * stats.norm.logsf(z)
    # E[g(Z1) g(Z2)] = E_Z1[ g(Z1) E[g(Z2) | Z1] ], Z2 | Z1 ~ N(rho Z1, 1 - rho^2)
    nodes, weights = np.polynomial.hermite_e.hermegauss(120)
    weights = weights / weights.sum()
    s = math.sqrt(1 - rho**2)
    inner = np.array([(weights * g(rho * z1 + s * nodes)).sum() for z1 in nodes])
    return float((weights * g(nodes) * inner).sum() - 4.0)


@pytest.mark.parametrize("rho", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_kost_polynomial_matches_the_exact_covariance(rho):
    """Kost & McDermott (2002) fit 3.263 r + 0.710 r^2 + 0.027 r^3 to the exact covariance of
    -2 ln p for correlated normal statistics; the fit is good to about 0.01 over r in [0, 1]."""
    assert area_score.KOST_COEFFICIENTS == (3.263, 0.710, 0.027)
    assert area_score.kost_covariance(rho) == pytest.approx(_exact_covariance(rho), abs=0.02)


def test_exact_covariance_reference_at_the_ends():
    """The integration itself: independent -> 0; identical -> var(-2 ln p) = var(chi2(2)) = 4."""
    assert _exact_covariance(0.0) == pytest.approx(0.0, abs=1e-6)
    assert _exact_covariance(0.999) == pytest.approx(4.0, abs=0.05)
    assert integrate.quad(lambda u: (-2 * math.log(u)) ** 2, 0, 1)[0] - 4.0 == pytest.approx(4.0)


def test_brown_with_identical_tests_gives_back_the_single_p_value():
    """k copies of one test (correlation 1): E = 2k, Var = 4k^2, so c = k and f = 2, and X / c =
    -2 ln p ~ chi2(2): the combined p is p itself (Kost's polynomial is exactly 4 at r = 1)."""
    for k in (2, 3, 4):
        combined, _, c, f = area_score.fisher_kost(np.full(k, 0.013), np.ones((k, k)))
        assert (c, f) == (pytest.approx(k, rel=1e-3), pytest.approx(2, rel=1e-3))
        assert combined == pytest.approx(0.013, rel=2e-3)


@pytest.mark.parametrize(("k", "h", "shift", "reference"), [
    (0.5, 4.0, 0.0, 336), (0.5, 5.0, 0.0, 930), (0.5, 4.0, 1.0, 8.38), (0.5, 5.0, 1.0, 10.4)])
def test_cusum_run_length_against_the_tabulated_values(k, h, shift, reference):
    """The upper CUSUM of N(shift, 1) statistics, k = 0.5: Montgomery's table of the tabular CUSUM
    (Introduction to Statistical Quality Control, table 9.3) gives ARL0 168 / 465 for the two-sided
    scheme at h = 4 / 5, i.e. 336 / 930 one-sided, and 8.38 / 10.4 at a shift of one standard deviation."""
    assert area_score.cusum_arl(k, h, shift) == pytest.approx(reference, rel=0.01)


@pytest.mark.parametrize(("k", "h", "shift"), [(0.5, 2.0, 0.0), (0.5, 4.0, 1.0), (1.0, 1.5, 0.5)])
def test_cusum_alarms_as_often_as_its_run_length_says(k, h, shift):
    """The CUSUM as the area score runs it (reset after an alarm) on simulated N(shift, 1) weeks:
    the mean run length equals the Markov-chain ARL; a CUSUM that did not reset, or added k, would not."""
    rng = np.random.default_rng(18)
    z = rng.normal(shift, 1.0, size=(400, 3000))
    _, alarms = area_score.cusum(z, k, h)
    runs = np.concatenate([np.diff(np.flatnonzero(np.concatenate([[True], row]))) for row in alarms])
    expected = area_score.cusum_arl(k, h, shift)
    assert runs.mean() == pytest.approx(expected, rel=0.03)


def test_cusum_accumulates_resets_and_reads_no_statistic_as_no_evidence():
    sums, alarms = area_score.cusum([[1.0, 1.0, np.nan, 2.0, 0.0, 3.0]], k=0.5, h=1.5)
    assert sums[0].tolist() == [0.5, 1.0, 0.5, 2.0, 0.0, 2.5]
    assert alarms[0].tolist() == [False, False, False, True, False, True]


def test_correlated_stouffer_is_standard_normal_under_the_null():
    """Strube's Z with the true correlation matrix keeps its nominal size: simulated correlated
    normal statistics (no rise) exceed the 1 % point 1 % of the time, while the naive Stouffer that
    ignores the correlation exceeds it far more often."""
    corr = np.array([[1, 0.8, 0.3, 0.2], [0.8, 1, 0.3, 0.2], [0.3, 0.3, 1, 0.4], [0.2, 0.2, 0.4, 1]])
    z = np.random.default_rng(18).multivariate_normal(np.zeros(4), corr, 200_000)
    strube = z.sum(axis=1) / math.sqrt(corr.sum())
    naive = z.sum(axis=1) / 2
    assert (strube > stats.norm.isf(0.01)).mean() == pytest.approx(0.01, abs=0.0015)
    assert (naive > stats.norm.isf(0.01)).mean() > 0.04
    p = stats.norm.sf(z[:5])
    for row, zz in zip(p, z[:5], strict=True):
        assert area_score.stouffer_correlated(zz, corr)[1] == pytest.approx(zz.sum() / math.sqrt(corr.sum()))
        assert area_score.normal_scores(row) == pytest.approx(zz, abs=1e-9)


def test_mid_p_against_scipy_negative_binomial_and_poisson():
    """Farrington's baseline distribution: NB with mean mu and size mu / (phi - 1) (scipy's nbinom(n,
    p) with n = mu / (phi - 1), p = 1 / phi), Poisson when phi = 1."""
    for y, mu, phi in [(7, 3.2, 1.8), (0, 2.0, 1.5), (25, 18.0, 1.0), (3, 0.9, 1.0)]:
        if phi > 1:
            dist = stats.nbinom(mu / (phi - 1), 1 / phi)
        else:
            dist = stats.poisson(mu)
        expected = dist.sf(y) + dist.pmf(y) / 2
        assert area_score.mid_p(y, mu, phi) == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# The score from Farrington's results
# ---------------------------------------------------------------------------------------------


def _farrington_rows(weeks: int = 30, areas: int = 8, seed: int = 3, rise: dict | None = None) -> pd.DataFrame:
    """Farrington-shaped results: Poisson counts around known expectations (no model needed)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2025-01-06").date()
    means = {"chronic_absence": 20.0, "invalid_absence": 12.0, "referrals": 6.0, "contacts": 7.0}
    rows = []
    for a in range(areas):
        for w in range(weeks):
            common = rng.normal()
            for indicator, mu in means.items():
                factor = (rise or {}).get((a, w), {}).get(indicator, 1.0)
                y = rng.poisson(mu * factor * math.exp(0.1 * common))
                rows.append({"area_code": f"A{a}", "indicator": indicator,
                             "week_start": start + pd.Timedelta(weeks=w), "observed": float(y),
                             "expected": mu, "phi": 1.0, "status": "ok"})
    return pd.DataFrame(rows)


PARAMS = {**area_score.DEFAULTS, "min_count": 5, "min_pairs": 50}


def test_a_weeks_score_depends_on_that_week_and_earlier_ones_only():
    rows = _farrington_rows()
    full = area_score.compute(rows, PARAMS)
    cut = pd.Timestamp("2025-04-07").date()
    early = area_score.compute(rows[rows["week_start"] <= cut], PARAMS)
    merged = full[full["week_start"] <= cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(merged, early.reset_index(drop=True))


def test_co_occurring_weak_rises_open_the_area_score_and_no_single_indicator_is_needed():
    """All four components of one area and week up a little (each single mid-p 0.02-0.06, none near
    an indicator's alpha of 0.001-0.02): the combined p is far below any single one and the week
    alarms, while quiet weeks almost never do."""
    rows = _farrington_rows(seed=11)
    week = pd.Timestamp("2025-01-06").date() + pd.Timedelta(weeks=25)
    raised = {"chronic_absence": 28.0, "invalid_absence": 19.0, "referrals": 11.0, "contacts": 12.0}
    for indicator, y in raised.items():
        rows.loc[(rows["area_code"] == "A2") & (rows["week_start"] == week) & (rows["indicator"] == indicator),
                 "observed"] = y
    scores = area_score.compute(rows, {**PARAMS, "alpha": 0.001})
    hit = scores[(scores["area_code"] == "A2") & (scores["week_start"] == week)].iloc[0]
    comp = rows[(rows["area_code"] == "A2") & (rows["week_start"] == week)]
    singles = area_score.mid_p(comp["observed"], comp["expected"], comp["phi"])
    assert 0.02 <= singles.min() and singles.max() <= 0.06
    assert hit["status"] == "ok" and hit["rising"] == 4
    assert hit["combined_p"] < singles.min() / 20
    assert hit["is_alert"] and hit["score"] > 1
    quiet = scores[(scores["status"] == "ok") & (scores["week_start"] != week)]
    assert quiet["is_alert"].mean() < 0.01
    fisher = area_score.compute(rows, {**PARAMS, "alpha": 0.001, "method": "fisher_kost"})
    assert fisher.loc[hit.name, "combined_p"] < singles.min() / 5


def test_counts_below_the_alert_minimum_are_no_evidence_whatever_they_are():
    """A component whose watched count is 0-4 counts as p = 0.5: the score and the alarm are the same
    for every such count, so neither tells a count of 1-4 from another."""
    rows = _farrington_rows(seed=5)
    week = rows["week_start"].max()
    outcomes = set()
    for y in range(5):
        changed = rows.copy()
        mask = (changed["area_code"] == "A1") & (changed["week_start"] == week) & (changed["indicator"] == "referrals")
        changed.loc[mask, ["observed", "expected"]] = [float(y), 1.2]
        s = area_score.compute(changed, PARAMS)
        row = s[(s["area_code"] == "A1") & (s["week_start"] == week)].iloc[0]
        outcomes.add((round(row["combined_p"], 12), row["is_alert"], row["rising"]))
    assert len(outcomes) == 1


def test_too_little_history_or_too_few_components_is_said_so():
    rows = _farrington_rows(weeks=10, areas=3)
    scores = area_score.compute(rows, {**PARAMS, "min_pairs": 1000})
    assert set(scores["status"]) == {"insufficient_history"} and not scores["is_alert"].any()
    rows = _farrington_rows()
    rows.loc[rows["indicator"] != "referrals", "status"] = "no_data"
    scores = area_score.compute(rows, PARAMS)
    assert (scores.loc[scores["status"] != "insufficient_history", "status"] == "no_data").all()


# ---------------------------------------------------------------------------------------------
# Synth's co-occurring rises
# ---------------------------------------------------------------------------------------------

SYNTH_WEEKS, SYNTH_END = 60, "2026-W20"


@pytest.fixture(scope="module")
def co_synth(tmp_path_factory):
    from ewi import synth

    base = tmp_path_factory.mktemp("co")
    synth.generate(base / "with", weeks=SYNTH_WEEKS, end_week=SYNTH_END, seed=21, co_rises=2)
    synth.generate(base / "without", weeks=SYNTH_WEEKS, end_week=SYNTH_END, seed=21)
    return base


def test_co_rises_are_recorded_in_the_ground_truth(co_synth):
    from ewi import synth

    truth = json.loads((co_synth / "with" / "ground_truth.json").read_text(encoding="utf-8"))
    single_areas = {r["area_code"] for r in truth["rises"]}
    assert len(truth["co_rises"]) == 2
    for number, group in enumerate(truth["co_rises"], start=1):
        assert group["group"] == f"co-{number}"
        assert group["area_code"] not in single_areas
        assert [c["indicator"] for c in group["components"]] == list(synth.CO_RISE_SIZES)
        for c in group["components"]:
            assert (c["area_code"], c["first_week"], c["week_start"], c["duration_weeks"]) == (
                group["area_code"], group["first_week"], group["week_start"], group["duration_weeks"])
            assert c["size"] == synth.CO_RISE_SIZES[c["indicator"]] and c["baseline"] > 0
    # the same seed without co-rises: the same single rises, none co-occurring
    calm = json.loads((co_synth / "without" / "ground_truth.json").read_text(encoding="utf-8"))
    assert calm["rises"] == truth["rises"] and calm["co_rises"] == []


def test_co_rises_change_only_their_area_in_their_weeks(co_synth):
    """Without co-rises the same seed gives the same world except where they were injected: the files
    of weeks without a co-rise byte for byte, and in their weeks every other area's referrals and
    contacts (the co-rises draw their extra events from streams of their own); inside, more."""
    truth = json.loads((co_synth / "with" / "ground_truth.json").read_text(encoding="utf-8"))
    touched_weeks, areas = set(), set()
    for group in truth["co_rises"]:
        start = pd.Timestamp(group["week_start"])
        touched_weeks |= {(start + pd.Timedelta(weeks=i)).date() for i in range(group["duration_weeks"])}
        areas.add(group["area_code"])
    from ewi.alerts.evaluation.counts import read_extract
    from ewi.sources import iso_week_start, parse_file_name

    for path in sorted((co_synth / "without").glob("*.csv")):
        if iso_week_start(parse_file_name(path.name).period) not in touched_weeks:
            assert (co_synth / "with" / path.name).read_bytes() == path.read_bytes(), path.name
    for source, date_column in (("referrals", "received_date"), ("contacts", "contact_date")):
        per_area = []
        for folder in ("with", "without"):
            frame = pd.concat([read_extract(p) for p in sorted((co_synth / folder).glob(f"{source}_*.csv"))])
            week = pd.to_datetime(frame[date_column]).dt.to_period("W-SUN").dt.start_time.dt.date
            per_area.append(frame.groupby([frame["home_area_code"], week]).size())
        with_, without = (s.reindex(per_area[0].index.union(per_area[1].index), fill_value=0) for s in per_area)
        inside = np.array([a in areas and w in touched_weeks for a, w in with_.index])
        assert (with_[~inside] == without[~inside]).all(), source
        assert with_[inside].sum() > without[inside].sum(), source


# ---------------------------------------------------------------------------------------------
# The real pipeline
# ---------------------------------------------------------------------------------------------

WEEKS, END_WEEK = 70, "2026-W20"
WAREHOUSE_DB, SYNTH_SEED = "ewi_area_score", 21


@pytest.fixture(scope="module")
def built(module_warehouse, tmp_path_factory, monkeypatch_module):
    """70 weeks with two co-occurring rises, ingested and built through the gated build, with
    area_score.alpha raised in a copy of the dbt project so the test data surely has alarms."""
    from ewi import config, synth, transform
    from ewi.ingest import ingest_files

    out = tmp_path_factory.mktemp("synth")
    synth.generate(out, weeks=WEEKS, end_week=END_WEEK, seed=SYNTH_SEED, co_rises=2)
    project = tmp_path_factory.mktemp("project") / "dbt_project"
    shutil.copytree(config.DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    settings = project / "dbt_project.yml"
    text = settings.read_text(encoding="utf-8")
    settings.write_text(text.replace("    alpha: 0.003478\n", "    alpha: 0.05\n"), encoding="utf-8")
    assert settings.read_text(encoding="utf-8") != text
    monkeypatch_module.setattr(config, "DBT_PROJECT_DIR", project)
    ingest_files(sorted(out.glob("*.csv")))
    summary = transform.build()
    return {"build": summary, "dsn": module_warehouse, "project": project}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.mark.slow
def test_the_pipeline_publishes_area_score_rows_and_signals(built):
    summary = built["build"]
    assert summary["success"] and summary["published"], summary["failures"]
    with psycopg.connect(built["dsn"], autocommit=True) as conn:
        rows = conn.execute("select area_code, week_start, method, observed, expected, upper_threshold, score, "
                            "is_alert, status, is_default_method from published.area_alerts "
                            "where indicator = 'area_score'").fetchall()
        computed = conn.execute("select area_code, week_start, is_alert, status from alerts.area_score_results"
                                ).fetchall()
        signals = conn.execute("select signal_key, area_code, first_week_start, last_alert_week_start, peak_score "
                               "from published.area_signals where indicator = 'area_score'").fetchall()
        areas = conn.execute("select count(*) from published.area_weekly_indicators "
                             "where indicator = 'referrals'").fetchone()[0]
    assert len(rows) == len(computed) and rows
    assert areas and len(rows) * 1 <= areas  # one row per area and week at most
    assert {r[2] for r in rows} == {"area_score"} and all(r[9] for r in rows)
    assert all(r[3] is None and r[4] is None and r[5] is None for r in rows)
    statuses = {r[8] for r in rows}
    assert "ok" in statuses or "withheld" in statuses
    alarms = {(r[0], r[1]) for r in rows if r[7]}
    assert alarms == {(c[0], c[1]) for c in computed if c[2]} and alarms
    # every alarm week lies in one published signal of its area, and every signal starts on one
    assert signals
    for key, area, first, last, _ in signals:
        assert key.startswith("area_score:" + area + ":area_score:")
        assert (area, first) in alarms and (area, last) in alarms
    for area, week in alarms:
        assert any(s[1] == area and s[2] <= week <= s[3] for s in signals)


@pytest.mark.slow
def test_the_area_score_matches_its_python_twin(built):
    """alerts.area_score_results is what ewi.alerts.area_score.compute gives from the stored
    Farrington results with the build's parameters."""
    with psycopg.connect(built["dsn"], autocommit=True) as conn:
        farrington = pd.DataFrame(conn.execute(
            "select area_code, indicator, week_start, observed, expected, phi, status "
            "from alerts.farrington_results").fetchall(),
            columns=["area_code", "indicator", "week_start", "observed", "expected", "phi", "status"])
        stored = pd.DataFrame(conn.execute(
            "select area_code, week_start, combined_p, is_alert, status from alerts.area_score_results "
            "order by area_code, week_start").fetchall(),
            columns=["area_code", "week_start", "combined_p", "is_alert", "status"])
    params = area_score.parameters(built["project"])
    assert params["alpha"] == 0.05
    again = area_score.compute(farrington, params).sort_values(["area_code", "week_start"], ignore_index=True)
    assert list(again["is_alert"]) == list(stored["is_alert"])
    assert list(again["status"]) == list(stored["status"])
    np.testing.assert_allclose(again["combined_p"].astype(float), stored["combined_p"].astype(float), rtol=1e-9)


@pytest.mark.slow
def test_the_disclosure_audit_accepts_the_area_score_and_stops_a_leak(built, capsys):
    """The gated build passed the audit with the area-score rows; `ewi disclosure-audit` on
    published passes, and fails once an area-score row publishes a count, or a score where a
    component's figures are withheld."""
    from ewi import cli
    from ewi.errors import EXIT_GATE, EXIT_OK

    assert any(p["phase"] == "disclosure audit" for p in built["build"]["timings"]["phases"])
    assert cli.main(["disclosure-audit"]) == EXIT_OK
    with psycopg.connect(built["dsn"], autocommit=True) as conn:
        withheld = conn.execute(
            """select s.area_code, s.week_start from published.area_alerts as s
               where s.indicator = 'area_score' and s.status = 'withheld' limit 1""").fetchone()
        assert withheld is not None
        key = {"area_code": withheld[0], "week_start": withheld[1]}
        where = "indicator = 'area_score' and area_code = %(area_code)s and week_start = %(week_start)s"
        for change, named in ((f"update published.area_alerts set score = 1.23 where {where}", "component"),  # noqa: S608
                              (f"update published.area_alerts set observed = 7 where {where}", "count")):  # noqa: S608
            conn.execute(change, key)
            try:
                capsys.readouterr()
                assert cli.main(["disclosure-audit"]) == EXIT_GATE
                out = capsys.readouterr().out
            finally:
                conn.execute(f"update published.area_alerts set score = null, observed = null where {where}",  # noqa: S608
                             key)
            assert "FAILED" in out and "area_score" in out and named in out


@pytest.mark.slow
def test_the_dashboard_shows_area_score_signals(built, tmp_path):
    """The overview's open signals and the area page's signal history list the area score's signals
    under its label, in both languages."""
    import ewi.dashboard
    from ewi.dashboard import users
    from ewi.dashboard.app import create_app
    from tests.dashboard.helpers import PASSWORDS, dashboard_environment, login, parse

    with psycopg.connect(built["dsn"], autocommit=True) as conn:
        signals = conn.execute("select signal_key, area_code from published.area_signals "
                               "where indicator = 'area_score' and state <> 'closed' order by 1").fetchall()
    assert signals
    with dashboard_environment(WAREHOUSE_DB, tmp_path / "users.json"):
        ewi.dashboard.refresh()
        try:
            users.save_users({"coord": users.User("coord", "coordinator", users.hash_password(PASSWORDS["coord"]))})
            coordinator = login(create_app(), "coord")
            for lang, label in (("en", "Area score"), ("sv", "Områdespoäng")):
                overview = coordinator.get(f"/?lang={lang}")
                assert overview.status_code == 200
                listed = {r.attrs["data_signal"]: r.text() for r in parse(overview.text).find_all("tr", class_="signal")}
                for key, _ in signals:
                    if key in listed:  # the overview lists the open signals of its week
                        assert label in listed[key]
                key, area = signals[-1]
                page = coordinator.get(f"/area/{area}?lang={lang}")
                assert page.status_code == 200
                history = {li.attrs["data_signal"]: li.text()
                           for li in parse(page.text).find("section", id="signals").find_all("li", class_="signal")}
                assert label in history[key]
        finally:
            ewi.dashboard.refresh()
