"""The interval each suppressed cell can be narrowed to, by linear programming (HiGHS through
scipy.optimize.linprog), as a statistical office's disclosure audit computes it (tau-ARGUS's audit:
minimise and maximise each suppressed cell subject to everything published).

The unknowns are relaxed from integers to non-negative reals, so an interval found is never
narrower than a reader with integer programming could find... except at its ends by less than one;
the rule checked, "contains every value from 0 to min_count - 1", is about integers and the ends of
a relaxed interval are the integer interval's or wider, so a pass is a pass for integers too.

Cost: the system falls apart into small independent parts (an area's series, linked across areas
only by the week's municipality total), each solved on its own. Instead of two programs per cell,
each part first asks which cells can all be 0 at once (one program) and which can reach
min_count - 1 (one program that maximises the sum of min(cell, min_count - 1)); only the cells
neither answers for get programs of their own, and those give the reported interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import csr_matrix

from ewi.disclosure.system import LinearSystem

#: Slack for the solver's floating point: a bound within this of 0 or of the required value passes.
TOLERANCE = 1e-6


@dataclass(frozen=True)
class Finding:
    cell: tuple
    lower: float
    upper: float
    figures: tuple[str, ...]  # the kinds of published figure that narrow it


def _components(system: LinearSystem) -> list[tuple[list[tuple], list[int]]]:
    parent: dict[tuple, tuple] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for constraint in system.constraints:
        cells = list(constraint.terms)
        for other in cells[1:]:
            a, b = find(cells[0]), find(other)
            if a != b:
                parent[a] = b
        find(cells[0])
    groups: dict[tuple, tuple[list, list]] = {}
    for i, constraint in enumerate(system.constraints):
        root = find(next(iter(constraint.terms)))
        groups.setdefault(root, ([], []))[1].append(i)
    for cell in parent:
        groups[find(cell)][0].append(cell)
    return list(groups.values())


class _Part:
    """One independent part: cells x >= 0 and lower <= A x <= upper, as HiGHS wants it."""

    def __init__(self, system: LinearSystem, cells: list[tuple], rows: list[int]):
        self.cells = sorted(cells)
        index = {c: i for i, c in enumerate(self.cells)}
        data, r_idx, c_idx, b_ub, eq_rows, b_eq = [], [], [], [], [], []
        ub_rows: list[dict] = []
        for i in rows:
            con = system.constraints[i]
            coefficients = {index[c]: v for c, v in con.terms.items()}
            if con.lower == con.upper:
                eq_rows.append(coefficients)
                b_eq.append(con.lower)
                continue
            if con.upper < math.inf:
                ub_rows.append(coefficients)
                b_ub.append(con.upper)
            if con.lower > -math.inf:
                ub_rows.append({k: -v for k, v in coefficients.items()})
                b_ub.append(-con.lower)
        n = len(self.cells)

        def matrix(rows_: list[dict]):
            if not rows_:
                return None
            data, r_idx, c_idx = [], [], []
            for r, coefficients in enumerate(rows_):
                for c, v in coefficients.items():
                    data.append(v)
                    r_idx.append(r)
                    c_idx.append(c)
            return csr_matrix((data, (r_idx, c_idx)), shape=(len(rows_), n))

        self.a_ub, self.b_ub = matrix(ub_rows), (np.array(b_ub) if b_ub else None)
        self.a_eq, self.b_eq = matrix(eq_rows), (np.array(b_eq) if b_eq else None)
        del data, r_idx, c_idx
        self.figures = tuple(sorted({f for i in rows for f in system.constraints[i].figure.split(" & ")}))

    def solve(self, objective: np.ndarray, cap: float | None = None):
        """Minimise objective . x over the part (with x <= cap when given); None when unbounded."""
        bounds = (0, cap)
        res = linprog(objective, A_ub=self.a_ub, b_ub=self.b_ub, A_eq=self.a_eq, b_eq=self.b_eq,
                      bounds=bounds, method="highs")
        if res.status == 3:  # unbounded
            return None
        if res.status != 0:
            raise InfeasibleFigures(self.figures, res.message)
        return res

    def with_aux_cap(self, required: float, candidates: list[int]):
        """One program: maximise sum(min(x_i, required)) over the candidates, with t_i <= x_i, t_i <= required."""
        n, m = len(self.cells), len(candidates)
        a_link = csr_matrix((np.concatenate([-np.ones(m), np.ones(m)]),
                             (np.concatenate([np.arange(m), np.arange(m)]),
                              np.concatenate([np.array(candidates), n + np.arange(m)]))), shape=(m, n + m))
        from scipy.sparse import hstack, vstack

        def widen(a):
            return None if a is None else hstack([a, csr_matrix((a.shape[0], m))]).tocsr()

        a_ub = vstack([x for x in (widen(self.a_ub), a_link) if x is not None]).tocsr()
        b_ub = np.concatenate([x for x in (self.b_ub, np.zeros(m)) if x is not None])
        objective = np.concatenate([np.zeros(n), -np.ones(m)])
        res = linprog(objective, A_ub=a_ub, b_ub=b_ub, A_eq=widen(self.a_eq), b_eq=self.b_eq,
                      bounds=[(0, None)] * n + [(0, required)] * m, method="highs")
        if res.status != 0:
            raise InfeasibleFigures(self.figures, res.message)
        return res.x[:n]


class InfeasibleFigures(Exception):
    """The published figures contradict each other (the system has no solution): the audit cannot
    vouch for them, which fails it like a leak."""

    def __init__(self, figures, message):
        super().__init__(f"the published figures {', '.join(figures)} have no common solution ({message})")
        self.figures = figures


def narrowed_cells(system: LinearSystem, required: float, enough: int = 20) -> tuple[list[Finding], dict]:
    """Suppressed cells whose interval leaves out a value of [0, required], and what it cost. Stops
    after `enough` findings (the build fails either way; stats["complete"] says whether it stopped)."""
    findings: list[Finding] = []
    stats = {"unknowns": len(system.unknowns), "constraints": len(system.constraints), "parts": 0,
             "linked_unknowns": 0, "programs": 0, "largest_part": 0, "complete": True}
    for cells, rows in _components(system):
        if len(findings) >= enough:
            stats["complete"] = False
            break
        part = _Part(system, cells, rows)
        n = len(part.cells)
        stats["parts"] += 1
        stats["linked_unknowns"] += n
        stats["largest_part"] = max(stats["largest_part"], n)
        # which cells can be 0: repeatedly minimise the sum of those not yet seen at 0
        open_low = list(range(n))
        while open_low:
            objective = np.zeros(n)
            objective[open_low] = 1.0
            x = part.solve(objective).x
            stats["programs"] += 1
            still = [i for i in open_low if x[i] > TOLERANCE]
            if len(still) == len(open_low):
                break
            open_low = still
        # which cells can reach `required`
        open_high = list(range(n))
        while open_high:
            x = part.with_aux_cap(required, open_high)
            stats["programs"] += 1
            still = [i for i in open_high if x[i] < required - TOLERANCE]
            if len(still) == len(open_high):
                break
            open_high = still
        for i in sorted(set(open_low) | set(open_high)):
            objective = np.zeros(n)
            objective[i] = 1.0
            low = part.solve(objective).fun
            high_res = part.solve(-objective)
            stats["programs"] += 2
            high = math.inf if high_res is None else -high_res.fun
            if low > TOLERANCE or high < required - TOLERANCE:
                findings.append(Finding(part.cells[i], round(low, 6), round(high, 6), part.figures))
                if len(findings) >= enough:
                    break
    return findings, stats
