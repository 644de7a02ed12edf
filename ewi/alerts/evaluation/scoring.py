"""What the evaluation runs and how it scores one series: the methods, their settings as the
project configures them (dbt_project.yml's # alerts block), and each method's alerts over the
monitored weeks with the mart's rule (no alert below alert_min_count)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np

from ewi.alerts.ears import EarsControl, ears
from ewi.alerts.farrington import FarringtonControl, farrington_flexible
from ewi.alerts.runner import farrington_control, farrington_parameters, project_vars, rolling_weeks

METHODS = ("farrington", "ears_c1", "ears_c2", "ears_c3")
MONITORED_WEEKS = 52


@dataclass(frozen=True)
class Settings:
    """Everything the methods are configured with (dbt_project.yml's # alerts block)."""

    farrington: dict  # farrington var (alpha may be per indicator)
    rolling: dict  # indicator -> weeks summed
    ears: EarsControl
    default: str  # the default method of indicators without one of their own
    min_count: int  # the mart's alert_min_count: no alert on a smaller watched count
    default_by_indicator: dict = field(default_factory=dict)  # indicator -> method (var ewi_default_alert_method)

    def farrington_for(self, indicator: str | None) -> FarringtonControl:
        return farrington_control(self.farrington, indicator)

    def default_for(self, indicator: str) -> str:
        """The method the dashboard calls an alert for this indicator (area_alerts.is_default_method)."""
        return self.default_by_indicator.get(indicator, self.default)


def default_methods(value) -> tuple[str, dict[str, str]]:
    """The dbt var ewi_default_alert_method: one method for every indicator, or a mapping
    indicator -> method with a `default` entry for the rest (macros/default_alert_method.sql)."""
    if isinstance(value, dict):
        return str(value.get("default", "farrington")), {str(k): str(v) for k, v in value.items() if k != "default"}
    return str(value or "farrington"), {}


def configured_settings() -> Settings:
    vars_ = project_vars()
    min_count = int(vars_.get("alert_min_count", 5))
    ears_control = EarsControl(
        baseline=int(vars_.get("ears_baseline_weeks", 7)), z=float(vars_.get("ears_z", 3.0)),
        min_sigma=float(vars_.get("ears_min_sigma", 1.0)), c3_threshold=float(vars_.get("ears_c3_threshold", 2.0)),
        min_count=min_count,
    )
    default, by_indicator = default_methods(vars_.get("ewi_default_alert_method", "farrington"))
    return Settings(farrington_parameters(), rolling_weeks(), ears_control, default, min_count, by_indicator)


@dataclass
class Scored:
    """Alerts and calibration statistics of every method over the monitored weeks of one series."""

    alerts: dict[str, np.ndarray] = field(default_factory=dict)
    c2_statistic: np.ndarray | None = None  # -inf where C2 cannot alert (no baseline, < min_count)


def score_series(observed: np.ndarray, week_starts: list[date], population: np.ndarray | None,
                 monitored: range, fc: FarringtonControl, ec: EarsControl) -> Scored:
    scored = Scored()
    results = farrington_flexible(observed, week_starts, fc, population=population, weeks=monitored)
    # The mart's rule (area_alerts.sql): no alert on a watched count below alert_min_count.
    scored.alerts["farrington"] = np.array([r.is_alert and r.observed >= ec.min_count for r in results])
    values = [None if not np.isfinite(v) else float(v) for v in observed]
    for method in ("ears_c1", "ears_c2", "ears_c3"):
        weeks = ears(values, method, ec)
        scored.alerts[method] = np.array([weeks[k].is_alert for k in monitored])
        if method == "ears_c2":
            scored.c2_statistic = np.array([
                weeks[k].statistic if weeks[k].statistic is not None and weeks[k].observed >= ec.min_count
                else -np.inf for k in monitored])
    return scored
