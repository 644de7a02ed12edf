"""Early-warning alerts on the weekly area series: Farrington-flexible (Python, ewi.alerts.farrington,
run by `run_farrington` into alerts.farrington_results), the negative-binomial GLR (ewi.alerts.glrnb,
run by `run_glrnb` on Farrington's expectations into alerts.glrnb_results) and EARS C1/C2/C3 (SQL in
dbt_project/models/intermediate/alert_ears.sql, with a Python reference in ewi.alerts.ears). See
docs/alerts.md."""

from ewi.alerts.glrnb_runner import run_glrnb
from ewi.alerts.runner import run_farrington

__all__ = ["run_farrington", "run_glrnb"]
