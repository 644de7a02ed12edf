"""Early-warning alerts on the weekly area series: Farrington-flexible (Python, ewi.alerts.farrington,
run by `run_farrington` into alerts.farrington_results), the negative-binomial GLR (ewi.alerts.glrnb,
run by `run_glrnb` on Farrington's expectations into alerts.glrnb_results), EARS C1/C2/C3 (SQL in
dbt_project/models/intermediate/alert_ears.sql, with a Python reference in ewi.alerts.ears), and the area
score combining the indicators' Farrington evidence (ewi.alerts.area_score, `run_area_score` into
alerts.area_score_results). See docs/alerts.md."""

from ewi.alerts.area_score import run_area_score
from ewi.alerts.glrnb_runner import run_glrnb
from ewi.alerts.runner import run_farrington

__all__ = ["run_area_score", "run_farrington", "run_glrnb"]
