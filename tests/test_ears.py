"""EARS C1/C2/C3 reference implementation (ewi.alerts.ears) against values computed by hand.

Series 2,4,2,4,2,4,2,12 (the same as the dbt unit test in models/intermediate/alert_ears.yml, which holds the
SQL to the same figures). Week 8 (index 7):
- C1: baseline weeks 1-7, mean 20/7 = 2.857, sd sqrt(6.857/6) = 1.069, statistic 8.552.
- C2: baseline weeks 1-5 (t-9..t-3 clipped), mean 2.8, sd sqrt(4.8/4) = 1.095, statistic 8.398.
- C3: (8.398 - 1) + max(0, -0.866 - 1) + max(0, 1.155 - 1) = 7.553.
"""

from __future__ import annotations

import math

import pytest

from ewi.alerts.ears import EarsControl, ears

SERIES = [2, 4, 2, 4, 2, 4, 2, 12]


def test_c1_hand_computed():
    week = ears(SERIES, "ears_c1")[7]
    assert week.expected == pytest.approx(20 / 7)
    assert week.sd == pytest.approx(math.sqrt((4 * (6 / 7) ** 2 + 3 * (8 / 7) ** 2) / 6))
    assert week.statistic == pytest.approx(8.552, abs=1e-3)
    assert week.upper == pytest.approx(20 / 7 + 3 * week.sd)
    assert week.score == pytest.approx(week.statistic / 3)
    assert week.is_alert


def test_c2_uses_a_two_week_guard_band():
    result = ears(SERIES, "ears_c2")
    assert [w.statistic is None for w in result] == [True] * 5 + [False] * 3
    week = result[7]
    assert week.expected == pytest.approx(2.8)
    assert week.sd == pytest.approx(math.sqrt(4.8 / 4))
    assert week.statistic == pytest.approx(8.398, abs=1e-3)


def test_c3_sums_positive_excess_of_three_weeks():
    c2 = ears(SERIES, "ears_c2")
    c3 = ears(SERIES, "ears_c3")
    assert c2[5].statistic == pytest.approx(1.155, abs=1e-3)
    assert c3[5].statistic == pytest.approx(0.155, abs=1e-3)
    assert c3[7].statistic == pytest.approx(c2[7].statistic - 1 + c2[5].statistic - 1)
    assert c3[7].is_alert
    # The threshold is the count that would bring C3 to 2 given the two weeks before.
    assert c3[7].upper == pytest.approx(c2[7].expected + c2[7].sd * (1 + 2 - (c2[5].statistic - 1)))


def test_no_alert_below_the_minimum_count_and_sigma_floor():
    flat = [0, 0, 0, 0, 0, 0, 0, 4]  # sd 0 -> min_sigma 1: statistic 4 > 3, but 4 < 5 cases
    week = ears(flat, "ears_c1")[7]
    assert week.sd == 1.0 and week.statistic == 4.0 and not week.is_alert
    assert ears(flat, "ears_c1", EarsControl(min_count=4))[7].is_alert


def test_missing_weeks_are_skipped_in_the_baseline():
    values = [2, None, 4, float("nan"), 2, 4, 2, 12]
    week = ears(values, "ears_c1")[7]
    assert week.expected == pytest.approx(14 / 5)  # 2, 4, 2, 4, 2
    assert ears(values, "ears_c1")[1].observed is None
    assert ears([1, 2, 12], "ears_c1")[2].statistic is None  # fewer than 3 baseline weeks


def test_unknown_method_is_refused():
    with pytest.raises(ValueError):
        ears(SERIES, "ears_c4")
