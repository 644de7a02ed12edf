"""Early-warning alerts on the weekly area series: Farrington-flexible (Python, ewi.alerts.farrington,
run by `run_farrington` into alerts.farrington_results) and EARS C1/C2/C3 (SQL in
dbt_project/models/intermediate/alert_ears.sql, with a Python reference in ewi.alerts.ears). See docs/alerts.md."""

from ewi.alerts.runner import run_farrington

__all__ = ["run_farrington"]
