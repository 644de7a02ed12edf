"""EWI's own Great Expectations expectation: GX's documented way to add a rule is a subclass.

GX's `unexpected_rows_expectation` always computes two metrics, the unexpected rows themselves and
their count, each as its own full query, and at the BASIC result format uses only the count. On a
million-row batch that doubles the cost of every SQL rule (a duplicate-key check: 0.76 s twice),
and it fetches the offending rows, pseudonyms included, into the worker's memory for nothing. This
subclass asks for the count alone. Importing this module registers it with GX.
"""

from __future__ import annotations

from typing import ClassVar

from great_expectations.expectations import UnexpectedRowsExpectation


class ExpectQueryToReturnNoRows(UnexpectedRowsExpectation):
    """The query over the batch ({batch}) lists violations; the batch passes when it lists none.
    Only the number of rows is computed and reported, never the rows."""

    metric_dependencies: ClassVar[tuple[str, ...]] = ("unexpected_rows_query.row_count",)

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None) -> dict:
        count = metrics["unexpected_rows_query.row_count"]
        return {"success": count == 0, "result": {"observed_value": count}}
