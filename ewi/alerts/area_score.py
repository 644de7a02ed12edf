"""The area score: one signal for an area where several indicators rise together (issue 18).

The team acts on an area where school absence, reports of concern and police/outreach contacts rise
together. Each indicator's own alert (Farrington) needs a rise large enough to stand out alone; a
group forming in an area moves all of them a little over the same weeks. The area score combines the
indicators' evidence of the week:

1. Each component indicator's one-sided mid-p value: P(Y > y) + P(Y = y) / 2 under its Farrington
   baseline (negative binomial with mean `expected` and dispersion `phi`, as the nbPlugin threshold
   uses). The mid-p, not Farrington's P(Y >= y): at 1-5 youths a week the plain upper tail is far
   from uniform (conservative), and combining conservative p-values throws evidence away.
2. Their correlation, estimated from history: the Pearson correlation of the normal scores
   z = Phi^-1(1 - p) of each pair of components, pooled over all areas and the weeks *before* the week
   scored (so a week's score depends on that week and earlier ones only, like Farrington's).
   Absence and unexcused absence are strongly correlated (the same pupils), the others less.
3. The combination (parameter `method`):
   - `stouffer` (default; Strube 1985): Z = sum(z) / sqrt(sum of the correlation matrix), a standard
     normal under the null whatever the correlation. It weighs several moderate rises the most, which
     is the pattern looked for;
   - `fisher_kost`: Fisher's X = -2 sum(ln p) with Brown's (1975) scaled chi-square c * chi2(f),
     f = 2 E^2 / Var, c = Var / (2 E), and the covariance of -2 ln p_i and -2 ln p_j from their
     normal-score correlation by Kost & McDermott's (2002) polynomial 3.263 r + 0.710 r^2 + 0.027 r^3.
4. The alarm: combined p <= alpha *and* at least `min_rising` components with p <= `rising_p` (the
   signal says "several indicators rise together"; one indicator's strong rise is its own alert's job).

Disclosure: a component's evidence counts only when its watched count is at least the alert minimum
(alert_min_count and disclosure_min_count, the rule that no week with a count of 1-4 alerts); below it
the component says "no evidence either way" (p = 0.5), the same for every count from 0 to 4, so no
score or alarm tells those counts apart. The mart publishes the score and the alarm, no count
(models/marts/area_alerts.sql withholds the score where a component's figures are withheld).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
from scipy import special, stats

from ewi.alerts.runner import project_vars

log = logging.getLogger(__name__)

RESULTS_TABLE = "alerts.area_score_results"
FARRINGTON_TABLE = "alerts.farrington_results"
INDICATOR = "area_score"
#: multi_signal is left out: it is made of the other indicators' flags (counting it would count them twice).
COMPONENTS = ("chronic_absence", "invalid_absence", "referrals", "contacts")
#: Used when dbt_project.yml has no `area_score` var (kept equal to the block there).
DEFAULTS = {
    "method": "stouffer", "alpha": 0.003478, "rising_p": 0.2, "min_rising": 2,
    "min_pairs": 100, "components": list(COMPONENTS),
}
#: Kost & McDermott (2002), eq. (9): cov(-2 ln p_i, -2 ln p_j) for one-sided p-values of standard
#: normal statistics with correlation r, a least-squares fit over r in [-0.98, 1].
KOST_COEFFICIENTS = (3.263, 0.710, 0.027)
#: Normal scores are clipped here (p-values of 1e-12 and 1 - 1e-12) so one extreme week cannot
#: dominate the history's correlation.
Z_LIMIT = 7.0
#: The smallest p-value a component gives (its normal score Z_LIMIT), for the same reason.
P_FLOOR = float(stats.norm.sf(Z_LIMIT))


def parameters(project_dir: Path | None = None) -> dict:
    vars_ = project_vars(project_dir)
    params = {**DEFAULTS, **(vars_.get("area_score") or {})}
    params["min_count"] = max(int(vars_.get("alert_min_count", 5)), int(vars_.get("disclosure_min_count", 5)))
    return params


# ---------------------------------------------------------------------------------------------
# Component evidence
# ---------------------------------------------------------------------------------------------

def _count_cdf(k: np.ndarray, mu: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """P(Y <= k) for Farrington's baseline distribution (negative binomial with mean mu and size
    mu / (phi - 1) when phi > 1, else Poisson(mu)); vectorised twin of farrington._count_cdf."""
    k, mu, phi = (np.asarray(a, dtype=float) for a in (k, mu, phi))
    with np.errstate(divide="ignore", invalid="ignore"):
        nb = special.betainc(mu / np.maximum(phi - 1, 1e-12), np.floor(k) + 1, 1 / phi)
        pois = special.gammaincc(np.floor(k) + 1, mu)
    return np.where(k < 0, 0.0, np.where(phi > 1, nb, pois))


def mid_p(observed, expected, phi) -> np.ndarray:
    """One-sided mid-p of a count: P(Y > y) + P(Y = y) / 2 under the baseline."""
    y = np.asarray(observed, dtype=float)
    above = 1.0 - _count_cdf(y, expected, phi)
    at_or_above = 1.0 - _count_cdf(y - 1, expected, phi)
    return np.clip((above + at_or_above) / 2, 0.0, 1.0)


def normal_scores(p) -> np.ndarray:
    """z = Phi^-1(1 - p), clipped to +-Z_LIMIT (NaN stays NaN)."""
    return np.clip(stats.norm.isf(np.asarray(p, dtype=float)), -Z_LIMIT, Z_LIMIT)


# ---------------------------------------------------------------------------------------------
# Combination
# ---------------------------------------------------------------------------------------------

def kost_covariance(r) -> np.ndarray:
    """cov(-2 ln p_i, -2 ln p_j) from the correlation r of the normal statistics (Kost & McDermott)."""
    r = np.asarray(r, dtype=float)
    a, b, c = KOST_COEFFICIENTS
    return a * r + b * r**2 + c * r**3


def fisher_kost(p, correlation) -> tuple[float, float, float, float]:
    """Brown's method for Fisher's combination with Kost's covariances: (combined p, X, c, f).
    With no correlation it is Fisher's method (c = 1, f = 2k)."""
    p = np.asarray(p, dtype=float)
    k = len(p)
    r = np.asarray(correlation, dtype=float)
    x = float(-2 * np.log(p).sum())
    expectation = 2.0 * k
    cov = kost_covariance(r[np.triu_indices(k, 1)]).sum()
    variance = 4.0 * k + 2.0 * cov
    c, f = variance / (2 * expectation), 2 * expectation**2 / variance
    return float(stats.chi2.sf(x / c, f)), x, float(c), float(f)


def stouffer_correlated(z, correlation) -> tuple[float, float]:
    """Stouffer's combination with correlated statistics (Strube 1985): (combined p, Z) with
    Z = sum(z) / sqrt(1' R 1), standard normal under the null."""
    z = np.asarray(z, dtype=float)
    total = float(np.asarray(correlation, dtype=float).sum())
    statistic = float(z.sum() / math.sqrt(total))
    return float(stats.norm.sf(statistic)), statistic


def cusum(z, k: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    """One-sided upper CUSUM of weekly statistics z (series x weeks, or one series), reset to 0 after
    an alarm: S_t = max(0, S_{t-1} + z_t - k), alarm when S_t >= h. A week without a statistic (NaN)
    adds no evidence (z = 0). Returns (S after each week, before the reset; alarm flags)."""
    z = np.nan_to_num(np.atleast_2d(np.asarray(z, dtype=float)), nan=0.0)
    s = np.zeros(z.shape[0])
    sums, alarms = np.zeros_like(z), np.zeros(z.shape, dtype=bool)
    for t in range(z.shape[1]):
        s = np.maximum(0.0, s + z[:, t] - k)
        sums[:, t], alarms[:, t] = s, s >= h
        s = np.where(alarms[:, t], 0.0, s)
    return sums, alarms


def cusum_arl(k: float, h: float, shift: float = 0.0, states: int = 400) -> float:
    """Average run length of the upper CUSUM (start 0) of N(shift, 1) statistics, by Brook & Evans's
    (1972) Markov chain: [0, h) in `states` cells, the first at 0 (the reflecting barrier)."""
    width = h / (states - 0.5)
    centres = np.arange(states) * width  # cell j = [(j - 1/2) w, (j + 1/2) w), cell 0 = [0, w/2)
    upper = (np.arange(states) + 0.5) * width
    # from centre i to cell j: P(centre_i + x - k in cell j), x ~ N(shift, 1)
    cdf = stats.norm.cdf(upper[None, :] - centres[:, None] + k - shift)
    q = np.diff(np.concatenate([np.zeros((states, 1)), cdf], axis=1), axis=1)
    run = np.linalg.solve(np.eye(states) - q, np.ones(states))
    return float(run[0])


# ---------------------------------------------------------------------------------------------
# Area x week scores
# ---------------------------------------------------------------------------------------------

def _component_grid(results: pd.DataFrame, components: list[str], min_count: int):
    """Weeks, areas and two (weeks x areas x components) arrays of mid-p values from Farrington's
    results: as computed (for the correlations), and as the score uses them, 0.5 (no evidence either
    way) where the watched count is below `min_count`, so no score or alarm depends on which count
    from 0 to min_count - 1 it was. NaN where a component has no evidence that week (no data, no model)."""
    frame = results[results["indicator"].isin(components)].copy()
    frame["week_start"] = pd.to_datetime(frame["week_start"]).dt.date
    weeks = sorted(frame["week_start"].unique())
    areas = sorted(frame["area_code"].unique())
    raw = np.full((len(weeks), len(areas), len(components)), np.nan)
    usable = (frame["status"].isin(["ok", "few_cases"]) & frame["expected"].notna() & frame["phi"].notna()
              & frame["observed"].notna())
    frame = frame[usable]
    if frame.empty:
        return weeks, areas, raw, raw.copy()
    observed = frame["observed"].to_numpy(float)
    values = np.clip(mid_p(observed, frame["expected"].to_numpy(float), frame["phi"].to_numpy(float)), P_FLOOR, 1.0)
    w = frame["week_start"].map({d: i for i, d in enumerate(weeks)}).to_numpy()
    a = frame["area_code"].map({d: i for i, d in enumerate(areas)}).to_numpy()
    c = frame["indicator"].map({d: i for i, d in enumerate(components)}).to_numpy()
    raw[w, a, c] = values
    gated = raw.copy()
    gated[w, a, c] = np.where(observed >= min_count, values, 0.5)
    return weeks, areas, raw, gated


def _history_correlations(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per week t, the components' correlation matrix from the weeks before t pooled over areas
    (pairwise complete), and the fewest pairs any entry rests on. z: weeks x areas x components."""
    n_weeks, _, k = z.shape
    corr = np.tile(np.eye(k), (n_weeks, 1, 1))
    fewest = np.full(n_weeks, np.inf)
    for i in range(k):
        for j in range(i + 1, k):
            both = np.isfinite(z[:, :, i]) & np.isfinite(z[:, :, j])
            x, y = np.where(both, z[:, :, i], 0.0), np.where(both, z[:, :, j], 0.0)
            sums = [np.concatenate([[0.0], np.cumsum(s.sum(axis=1))])[:-1]  # weeks before t
                    for s in (both.astype(float), x, y, x * x, y * y, x * y)]
            n, sx, sy, sxx, syy, sxy = sums
            with np.errstate(divide="ignore", invalid="ignore"):
                r = (n * sxy - sx * sy) / np.sqrt((n * sxx - sx**2) * (n * syy - sy**2))
            r = np.clip(np.nan_to_num(r, nan=0.0), -0.99, 0.99)
            corr[:, i, j] = corr[:, j, i] = r
            fewest = np.minimum(fewest, n)
    return corr, fewest


def compute(results: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Area x week area scores from Farrington's results (columns area_code, indicator, week_start,
    observed, expected, phi, status)."""
    components = list(params["components"])
    weeks, areas, raw, p = _component_grid(results, components, int(params["min_count"]))
    if not weeks:
        return pd.DataFrame()
    z = normal_scores(p)
    corr, fewest = _history_correlations(normal_scores(raw))
    rows = []
    for t, week in enumerate(weeks):
        for a, area in enumerate(areas):
            present = np.flatnonzero(np.isfinite(p[t, a]))
            row = {"area_code": area, "week_start": week, "components": len(present),
                   "rising": int((p[t, a, present] <= params["rising_p"]).sum()),
                   "combined_p": None, "statistic": None, "score": None, "is_alert": False}
            if fewest[t] < params["min_pairs"]:
                row["status"] = "insufficient_history"
            elif len(present) < 2:
                row["status"] = "no_data"
            else:
                sub = corr[t][np.ix_(present, present)]
                if params["method"] == "fisher_kost":
                    combined, statistic, _, _ = fisher_kost(p[t, a, present], sub)
                else:
                    combined, statistic = stouffer_correlated(z[t, a, present], sub)
                combined = max(combined, 1e-300)
                row.update(status="ok", combined_p=combined, statistic=statistic,
                           score=math.log(combined) / math.log(params["alpha"]),
                           is_alert=bool(combined <= params["alpha"] and row["rising"] >= params["min_rising"]))
            rows.append(row)
    return pd.DataFrame(rows)


def run_area_score(conn: psycopg.Connection, project_dir: Path | None = None) -> int:
    """Recompute every week's area scores from alerts.farrington_results into alerts.area_score_results
    (a few thousand rows: recomputed whole, deterministic for given input); returns the rows written."""
    params = parameters(project_dir)
    results = pd.DataFrame(
        conn.execute(f"select area_code, indicator, week_start, observed, expected, phi, status "  # noqa: S608
                     f"from {FARRINGTON_TABLE}").fetchall(),
        columns=["area_code", "indicator", "week_start", "observed", "expected", "phi", "status"])
    scores = compute(results, params) if not results.empty else pd.DataFrame()
    columns = ["area_code", "week_start", "components", "rising", "combined_p", "statistic", "score",
               "is_alert", "status"]
    with conn.transaction():
        conn.execute(f"delete from {RESULTS_TABLE}")  # noqa: S608
        if not scores.empty:
            with conn.cursor().copy(f"copy {RESULTS_TABLE} ({', '.join(columns)}, method) from stdin") as copy:
                for row in scores[columns].itertuples(index=False, name=None):
                    copy.write_row([None if isinstance(v, float) and math.isnan(v) else
                                    (v.item() if hasattr(v, "item") else v) for v in row] + [params["method"]])
    log.info("area score: %d area-weeks", len(scores))
    return len(scores)
