"""`make mutation`: do the tests of the privacy and correctness rules notice when a rule is broken?

    python -m ewi.mutation [identifiers] [auth] [disclosure] [--budget-minutes N] [--list]

Each target is a few source files and the fast tests that cover them. A mutant is one small change
to one file (a comparison turned around, a constant moved by one, `and` for `or`, a string made
unrecognisable, a condition dropped); it is applied to a copy of the repository, the target's tests
run there in a process of their own (`pytest -x`), and the mutant is *killed* when they fail and
*survives* when they pass. A survivor is a rule that can break without a test noticing.

Python files are mutated token by token (tokenize), so every operator, constant and keyword of the
rule is tried; the dbt macro is SQL inside Jinja, so its mutants are a hand-written list below, one
per rule the macro states. The tests run as they run in `make test`: real warehouse, real dbt, the
dashboard served in a process of its own. That is why mutants are applied to files on disk rather
than swapped in inside the test process.

Bounded in time: each mutant gets three times its target's clean run (plus 30 s) before it counts as
killed by timeout, and each target stops starting mutants when its share of --budget-minutes is
spent (the rest are reported as not run).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import tokenize
from dataclasses import asdict, dataclass
from pathlib import Path
from xml.etree import ElementTree

from ewi import config


@dataclass(frozen=True)
class Target:
    name: str
    files: tuple[str, ...]
    # pytest arguments, fastest first (-x stops at the first failure); missing files are left out
    tests: tuple[str, ...]
    budget_share: float
    strings: bool = True  # whether string literals are mutated too


TARGETS = (
    # the detector's own tests first; then two real ingests for the paths only a file takes (a
    # Windows-1252 file's bytes, a number at the end of a large file's last block)
    Target("identifiers", ("ewi/ingest/identifiers.py",), (
        "tests/test_identifiers.py::test_the_detector_finds_every_form",
        "tests/test_identifiers.py::test_the_detector_leaves_codes_alone",
        "tests/test_identifiers.py::test_the_detector_finds_the_checks_edges",
        "tests/test_identifiers.py::test_the_detector_leaves_the_checks_edges_alone",
        "tests/test_identifiers.py::test_the_detector_leaves_hashes_and_uuids_alone",
        "tests/test_identifiers.py::test_file_name_redaction_replaces_each_number_in_place",
        "tests/test_ingest.py::test_identity_number_detector_ignores_pseudonyms_and_codes",
        "tests/test_identifiers.py::test_an_identity_number_rejects_a_windows_1252_file",
        "tests/test_identifiers.py::test_a_number_in_the_last_line_of_a_large_file_is_found",
    ), 0.3),
    # Without the HSTS and Data Docs tests (security/access.py's rules, and a second server each). Strings are not
    # mutated here: they are SQL statements, JSON keys and variable names, each broken string fails the
    # first login, and each would cost a full test run (the dashboard is served in a process of its own).
    Target("auth", ("ewi/dashboard/users.py", "ewi/dashboard/security/sessions.py"), tuple(
        f"tests/dashboard/test_security.py::test_{name}" for name in (
            "malformed_password_hashes_fail_closed",
            "a_short_salt_or_a_cut_digest_is_refused_though_scrypt_would_check_it",
            "a_cookie_saved_before_logout_no_longer_works",
            "logging_in_again_ends_the_session_it_replaces",
            "a_demoted_user_loses_the_old_role_at_the_next_request",
            "a_deleted_user_is_logged_out_at_the_next_request",
            "ewi_dashboard_remove_user_ends_the_users_sessions",
            "a_new_password_ends_the_sessions_opened_with_the_old_one",
            "sessions_end_12_hours_after_login_however_active",
            "sessions_end_after_8_idle_hours_on_the_server",
            "wrong_passwords_for_one_user_are_throttled_with_growing_waits",
            "waits_stop_growing_at_15_minutes_and_a_success_or_a_quiet_day_forgets_them",
            "guesses_sent_all_at_once_are_throttled_like_one_after_another",
            "one_address_trying_many_usernames_is_throttled",
            "a_malformed_password_hash_refuses_every_login_and_says_so",
        )), 0.4, strings=False),
    # the hand-worked cells of one small build first (the gated build also runs the disclosure audit);
    # then the dbt unit tests, and the sum-below-minimum rule and the differencing attack on a
    # two-year synthetic build
    Target("disclosure", ("dbt_project/macros/disclosure_control.sql",), (
        "tests/test_transform.py::test_primary_and_secondary_suppression",
        "tests/test_transform.py::test_no_published_count_between_one_and_four",
        "tests/test_transform.py::test_absence_cells_by_hand",
        "tests/test_transform.py::test_contacts_and_multi_signal_by_hand",
        "tests/test_transform.py::test_dbt_unit_tests_pass",
        "tests/test_disclosure.py::test_secondary_suppression_sum_below_minimum_on_built_data",
        "tests/test_disclosure.py::test_differencing_recovers_no_suppressed_cell",
    ), 0.4),
)


@dataclass(frozen=True)
class Mutant:
    path: str
    line: int
    start: int  # character offsets of the replaced text in the file
    end: int
    original: str
    replacement: str
    rule: str = ""  # for a hand-written mutant: the rule it breaks

    def describe(self) -> str:
        what = f" ({self.rule})" if self.rule else ""
        return f"{self.path}:{self.line}: {self.original!r} -> {self.replacement!r}{what}"

    def apply(self, text: str) -> str:
        assert text[self.start:self.end] == self.original, self.describe()
        return text[:self.start] + self.replacement + text[self.end:]


# ------------------------------------------------------------------------------------ Python

_OPERATORS = {
    "==": "!=", "!=": "==", "<": "<=", "<=": "<", ">": ">=", ">=": ">",
    "+": "-", "-": "+", "%": "/", "//": "/", "**": "*", "+=": "-=", "-=": "+=",
}
_KEYWORDS = {"and": "or", "or": "and", "True": "False", "False": "True", "break": "continue",
             "continue": "break"}
# Text that is a message, not a rule: a changed log line or exception text is not a broken rule.
_MESSAGE_STARTS = ("log.", "raise ", "warnings.warn")
_SOFT_KEYWORDS = {"return", "in", "and", "or", "not", "if", "else", "is", "yield", "lambda", "assert"}


def python_mutants(path: str, text: str, strings: bool = True) -> list[Mutant]:
    lines = text.splitlines(keepends=True)
    line_start = [0]
    for line in lines:
        line_start.append(line_start[-1] + len(line))

    def offset(pos: tuple[int, int]) -> int:
        return line_start[pos[0] - 1] + pos[1]

    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    mutants = []
    statement: list[tokenize.TokenInfo] = []  # the tokens of the current logical line so far
    pending_for = 0  # `for` tokens of this logical line whose `in` is still to come
    for i, tok in enumerate(tokens):
        if tok.type == tokenize.NEWLINE:
            statement, pending_for = [], 0
            continue
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            continue
        previous = statement[-1] if statement else None
        statement.append(tok)
        if "pragma: no mutate" in lines[tok.start[0] - 1]:
            continue
        is_message = lines[statement[0].start[0] - 1].lstrip().startswith(_MESSAGE_STARTS)
        start, end = offset(tok.start), offset(tok.end)
        found: list[tuple[str, int, int]] = []  # (replacement, start, end)
        if tok.type == tokenize.OP and tok.string in _OPERATORS:
            # `-x` and `+x` are left alone: only an operator between two operands is turned around
            binary = previous is not None and (
                previous.type in (tokenize.NUMBER, tokenize.STRING) or previous.string in ")]}"
                or previous.type == tokenize.NAME and previous.string not in _SOFT_KEYWORDS)
            if binary or tok.string not in "+-":
                found.append((_OPERATORS[tok.string], start, end))
        elif tok.type == tokenize.NAME and tok.string in _KEYWORDS:
            found.append((_KEYWORDS[tok.string], start, end))
        elif tok.type == tokenize.NAME and tok.string == "not":
            found.append(("", start, offset(tokens[i + 1].start)))  # `not x` -> `x`; `not in` -> `in`
        elif tok.type == tokenize.NAME and tok.string == "for":
            pending_for += 1
        elif tok.type == tokenize.NAME and tok.string == "in":
            if pending_for:
                pending_for -= 1
            elif previous is not None and previous.string != "not":
                found.append(("not in", start, end))
        elif tok.type == tokenize.NAME and tok.string == "is" and tokens[i + 1].string != "not":
            found.append(("is not", start, end))
        elif tok.type == tokenize.NUMBER and tok.string.isdigit():
            found.append((str(int(tok.string) + 1), start, end))
        elif tok.type == tokenize.STRING and strings and not is_message and len(statement) > 1:
            # a docstring is a statement of its own; f-strings are left alone (their parts are code)
            prefix = tok.string[:len(tok.string) - len(tok.string.lstrip("rRbBuUfF"))]
            quote = tok.string[len(prefix):len(prefix) + 3]
            if quote not in ('"""', "'''"):
                quote = quote[0]
            body = tok.string[len(prefix) + len(quote):len(tok.string) - len(quote)]
            if "f" not in prefix.lower():
                found.append((f"{prefix}{quote}XX{body}XX{quote}", start, end))
        for replacement, s, e in found:
            mutants.append(Mutant(path, tok.start[0], s, e, text[s:e], replacement))
    return [m for m in mutants if _compiles(m.apply(text), path)]


def _compiles(text: str, path: str) -> bool:
    try:
        compile(text, path, "exec")
    except SyntaxError:
        return False
    return True


# ------------------------------------------------------------------------------------ SQL (dbt)

# (text that occurs exactly once in the macro file, its replacement, the rule it breaks)
# Ordered by harm: a suppressed count published first, a rate's rounding last (under a time budget the
# tail is what is left out).
DISCLOSURE_MUTATIONS = (
    ("(case when numerator_is_suppressed then null else numerator end)", "numerator",
     "suppressed numerator published"),
    ("(case when denominator_is_suppressed then null else denominator end)", "denominator",
     "suppressed denominator published"),
    ("' between 1 and ' ~ (m - 1)", "' between 2 and ' ~ (m - 1)", "a count of 1 is published"),
    ("' between 1 and ' ~ (m - 1)", "' between 1 and ' ~ (m - 2)", "a count of min-1 is published"),
    ("g.{{ is_small }} or (", "g.{{ is_small }} and (", "primary suppression only with secondary"),
    ("(g._n_small_{{ c }} = 1 or g._sum_small_{{ c }} < {{ m }})", "g._n_small_{{ c }} = 1",
     "sum-below-minimum rule dropped"),
    ("(g._n_small_{{ c }} = 1 or g._sum_small_{{ c }} < {{ m }})", "g._sum_small_{{ c }} < {{ m }}",
     "single-suppressed-cell rule dropped"),
    ("g._rank_{{ c }} = 1", "g._rank_{{ c }} = 2", "secondary suppression picks the second cell"),
    ("and g.{{ c }} >= {{ m }}", "and g.{{ c }} > {{ m }}", "secondary cell must exceed the minimum"),
    ("order by (s.{{ c }} >= {{ m }}) desc", "order by (s.{{ c }} >= {{ m }}) asc",
     "secondary cell chosen among the small ones"),
    ("'numerator_is_suppressed or denominator_is_suppressed', 'is_share'", "'numerator_is_suppressed', 'is_share'",
     "rate published when only the denominator is suppressed"),
    ("when {{ is_suppressed }} or {{ denominator }} is null", "when {{ is_suppressed }} and {{ denominator }} is null",
     "rate of a suppressed count published"),
    ("(numerator_is_suppressed or denominator_is_suppressed)::boolean",
     "(numerator_is_suppressed and denominator_is_suppressed)::boolean", "is_suppressed needs both"),
    ("g._sum_small_{{ c }} < {{ m }}", "g._sum_small_{{ c }} <= {{ m }}", "sum equal to the minimum"),
    ("g._n_small_{{ c }} = 1 or", "g._n_small_{{ c }} = 2 or", "single-cell rule needs two cells"),
    ("coalesce(sum(s.{{ c }}) filter (where s.{{ is_small }}) {{ over }}, 0)",
     "coalesce(sum(s.{{ c }}) {{ over }}, 0)", "sum of small cells is the sum of all"),
    ("count(*) filter (where s.{{ is_small }})", "count(*)", "every cell counted as small"),
    ("' between 1 and ' ~ (m - 1)", "' between 0 and ' ~ (m - 1)", "a zero is suppressed"),
    ("' between 1 and ' ~ (m - 1)", "' between 1 and ' ~ m", "a count of min is suppressed"),
    ("desc, s.{{ c }}, s.{{ tiebreak }}", "desc, s.{{ c }} desc, s.{{ tiebreak }}",
     "largest cell suppressed instead of the smallest"),
    ("g._n_small_{{ c }} >= 1", "g._n_small_{{ c }} >= 0", "secondary suppression without a primary"),
    ("coalesce(s.{{ is_small }}, false)", "coalesce(s.{{ is_small }}, true)", "unknown counts suppressed"),
    (" or {{ denominator }} = 0 then null", " then null", "rate over a zero denominator"),
    ("then 100.0 else 1000.0", "then 1000.0 else 100.0", "percent and per-1000 swapped"),
    ("{{ numerator }} / {{ denominator }}, 2)", "{{ numerator }} / {{ denominator }}, 1)", "rate rounded to 1 decimal"),
)


def sql_mutants(path: str, text: str) -> list[Mutant]:
    mutants = []
    for original, replacement, rule in DISCLOSURE_MUTATIONS:
        if text.count(original) != 1:
            raise SystemExit(f"{path}: the mutation list no longer matches the macro ({original!r} occurs "
                             f"{text.count(original)} times); update DISCLOSURE_MUTATIONS in ewi/mutation.py")
        start = text.index(original)
        mutants.append(Mutant(path, text.count("\n", 0, start) + 1, start, start + len(original), original,
                              replacement, rule))
    return mutants


def mutants_of(target: Target, path: str, text: str) -> list[Mutant]:
    return python_mutants(path, text, target.strings) if path.endswith(".py") else sql_mutants(path, text)


# ------------------------------------------------------------------------------------ running


def _copy_repository(dest: Path) -> None:
    """The committed and working files of this checkout (not .git, .venv, .ewi or build output)."""
    root = config.PROJECT_ROOT
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, check=True,
                            capture_output=True).stdout.decode().split("\0")
    if dest.exists():
        shutil.rmtree(dest)
    for rel in filter(None, listed):
        src = root / rel
        if src.is_file() and not rel.startswith((".venv", ".ewi", "mutants/")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _fresh_warehouse() -> str:
    """The DSN for the next test run: one server for the whole mutation run (starting an embedded
    server costs each run 6-7 s), every database of the previous run dropped, so each run starts as
    clean as with a server of its own."""
    import psycopg

    from ewi import warehouse

    with psycopg.connect(warehouse.dsn("postgres"), autocommit=True) as conn:
        names = [r[0] for r in conn.execute(
            "select datname from pg_database where not datistemplate and datname <> 'postgres'")]
        for name in names:
            conn.execute(psycopg.sql.SQL("drop database {} with (force)").format(psycopg.sql.Identifier(name)))
    return warehouse.dsn("ewi_mutation")


class BrokenRun(RuntimeError):
    """pytest did not get as far as running or collecting a test: the environment, not a mutant."""


def _run_tests(tree: Path, tests: list[str], basetemp: Path, timeout: float | None) -> tuple[str, float]:
    """'passed', 'failed' or 'timeout', and the seconds it took. 'failed' needs pytest's own report
    of a failed or uncollectable test: a pytest that could not start at all kills nothing."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1",
           "EWI_TEST_WAREHOUSE_DSN": _fresh_warehouse()}
    for name in ("EWI_HOME", "EWI_WAREHOUSE_DSN", "EWI_WAREHOUSE_DB"):
        env.pop(name, None)  # the test session makes its own home; the warehouse is the one above
    report = basetemp.parent / "last-run.xml"
    report.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--basetemp", str(basetemp),
           f"--junitxml={report}", *tests]
    started = time.monotonic()
    with open(basetemp.parent / "last-run.log", "w") as log:  # the last run's output, for a failing clean run
        proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - started
    finally:
        # the run's own process group: pytest and whatever it started (a dashboard server)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        shutil.rmtree(basetemp, ignore_errors=True)
    elapsed = time.monotonic() - started
    if proc.returncode == 0:
        return "passed", elapsed
    # a mutant that breaks an import shows as a collection error, which the report holds too
    suite = ElementTree.parse(report).getroot() if report.exists() else None
    if suite is not None and suite.tag == "testsuites":
        suite = suite.find("testsuite")
    if suite is None or int(suite.get("failures", 0)) + int(suite.get("errors", 0)) == 0:
        raise BrokenRun(f"pytest exited {proc.returncode} without a failed test; see {basetemp.parent}/last-run.log")
    return "failed", elapsed


def run_target(target: Target, work: Path, budget_s: float) -> dict:
    tree = work / target.name / "tree"
    _copy_repository(tree)
    tests = [t for t in target.tests if (tree / t.split("::")[0]).exists()]
    outcome, clean_s = _run_tests(tree, tests, work / target.name / "pt", None)
    if outcome != "passed":
        raise SystemExit(f"{target.name}: the tests fail without any mutant (pytest {' '.join(tests)}); "
                         f"see {work / target.name / 'last-run.log'}")
    print(f"  clean run {clean_s:.1f} s: {' '.join(tests)}", flush=True)
    timeout = 3 * clean_s + 30
    started = time.monotonic()
    report = {"target": target.name, "files": list(target.files), "tests": tests, "clean_run_s": round(clean_s, 1),
              "killed": 0, "total": 0, "not_run": 0, "elapsed_s": 0.0, "mutants": []}
    originals = {path: (tree / path).read_text(encoding="utf-8") for path in target.files}
    mutants = [m for path in target.files for m in mutants_of(target, path, originals[path])]
    if not target.files[0].endswith(".sql"):
        # a fixed shuffle: when the time budget cuts the run, the mutants tried are a fair sample of
        # every file and rule rather than the top of the first file (the SQL list is ordered by harm)
        random.Random(13).shuffle(mutants)
    for mutant in mutants:
        path, original = mutant.path, originals[mutant.path]
        if time.monotonic() - started > budget_s:
            report["mutants"].append({**asdict(mutant), "status": "not run"})
            report["not_run"] += 1
            continue
        (tree / path).write_text(mutant.apply(original), encoding="utf-8")
        try:
            outcome, seconds = _run_tests(tree, tests, work / target.name / "pt", timeout)
        finally:
            (tree / path).write_text(original, encoding="utf-8")
        status = "survived" if outcome == "passed" else "killed"
        report["mutants"].append({**asdict(mutant), "status": status, "seconds": round(seconds, 1),
                                  "timeout": outcome == "timeout"})
        report["total"] += 1
        report["killed"] += status == "killed"
        report["elapsed_s"] = round(time.monotonic() - started, 1)
        # kept after each mutant, so that an interrupted run still shows what it found
        (work / f"{target.name}.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(f"  {status:8s} {seconds:5.1f} s  {mutant.describe()}", flush=True)
    (work / f"{target.name}.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ewi.mutation", description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", metavar="target", help=f"any of {[t.name for t in TARGETS]}")
    parser.add_argument("--budget-minutes", type=float, default=25.0,
                        help="time for all the chosen targets' mutants together (default 25)")
    parser.add_argument("--list", action="store_true", help="print the mutants without running anything")
    args = parser.parse_args(argv)
    unknown = set(args.targets) - {t.name for t in TARGETS}
    if unknown:
        parser.error(f"unknown target(s) {sorted(unknown)}")
    chosen = [t for t in TARGETS if not args.targets or t.name in args.targets]
    if args.list:
        for target in chosen:
            for path in target.files:
                for mutant in mutants_of(target, path, (config.PROJECT_ROOT / path).read_text(encoding="utf-8")):
                    print(f"{target.name}: {mutant.describe()}")
        return 0
    from ewi import warehouse

    work = config.ewi_home() / "mutation"
    # the tests' warehouse server lives here, apart from the developer's own .ewi/warehouse
    os.environ["EWI_HOME"] = str(work)
    for name in ("EWI_WAREHOUSE_DSN", "EWI_WAREHOUSE_DB"):
        os.environ.pop(name, None)
    shares = sum(t.budget_share for t in chosen)
    reports = []
    try:
        for target in chosen:
            print(f"==> {target.name}: {', '.join(target.files)}", flush=True)
            reports.append(run_target(target, work, args.budget_minutes * 60 * target.budget_share / shares))
    except BrokenRun as exc:
        print(f"stopped: {exc}; the mutants tried so far are in {work}/<target>.json", file=sys.stderr)
        return 2
    finally:
        warehouse.stop()
    print("\nMutation score (killed / mutants tried)")
    for r in reports:
        extra = f", {r['not_run']} not run (time budget)" if r["not_run"] else ""
        print(f"  {r['target']:12s} {r['killed']:3d} / {r['total']:3d}  in {r['elapsed_s']:.0f} s{extra}")
        for m in r["mutants"]:
            if m["status"] == "survived":
                print(f"      survived: {Mutant(**{k: m[k] for k in Mutant.__dataclass_fields__}).describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
