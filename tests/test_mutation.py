"""The mutants `make mutation` tries: the changes a reviewer would make by hand to break a rule, and
none that only rewrite a message or cannot run."""

from __future__ import annotations

from ewi import config, mutation

RULE = '''"""A docstring is not a rule."""
import logging

log = logging.getLogger(__name__)


def luhn_ok(digits: str) -> bool:
    """Nor is this one."""
    total = 0
    for i, ch in enumerate(digits):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    if not digits or digits[-1] in "+-":
        log.warning("a message %s is not a rule", f"{digits!r}")
        raise ValueError("nor is this text")
    return total % 10 == 0 and digits[:2] in ("19", "20") and f"{total}" is not None
'''


def changes(source: str) -> list[tuple[int, str, str]]:
    return [(m.line, m.original, m.replacement) for m in mutation.python_mutants("rule.py", source)]


def test_python_mutants_turn_each_operator_constant_and_keyword_of_a_rule():
    found = changes(RULE)
    for expected in [
        (9, "0", "1"),
        (11, "==", "!="),            # the Luhn weights swapped: 1 2 1 2 ... instead of 2 1 2 1 ...
        (11, "%", "/"),
        (12, "+=", "-="),
        (12, ">", ">="),
        (12, "9", "10"),
        (13, "not ", ""),
        (13, "or", "and"),
        (13, "in", "not in"),
        (16, "and", "or"),
        (16, '"20"', '"XX20XX"'),     # the 12-digit form of a 2000s birth no longer recognised
    ]:
        assert expected in found, expected


def test_python_mutants_leave_docstrings_messages_loops_and_unary_minus_alone():
    found = changes(RULE)
    lines_with_mutants = {line for line, _, _ in found}
    assert not lines_with_mutants & {1, 8, 14, 15}  # docstrings, the log call, the exception text
    assert (10, "in", "not in") not in found       # `for ... in` is a loop, not a test
    assert all(original != "-" for line, original, _ in found if line == 13)  # digits[-1]
    assert not any(original.startswith("f") for _, original, _ in found)


def test_every_python_mutant_of_the_targets_still_compiles():
    for target in mutation.TARGETS:
        for path in target.files:
            if path.endswith(".py"):
                source = (config.PROJECT_ROOT / path).read_text(encoding="utf-8")
                mutants = mutation.python_mutants(path, source)
                assert mutants, path
                for m in mutants:
                    compile(m.apply(source), path, "exec")


def test_each_hand_written_disclosure_mutant_names_one_place_in_the_macro():
    """A change to the macro that moves a rule fails here, not silently in `make mutation`."""
    (target,) = [t for t in mutation.TARGETS if t.name == "disclosure"]
    (path,) = target.files
    source = (config.PROJECT_ROOT / path).read_text(encoding="utf-8")
    mutants = mutation.sql_mutants(path, source)
    assert len(mutants) == len(mutation.DISCLOSURE_MUTATIONS)
    assert len({(m.start, m.replacement) for m in mutants}) == len(mutants)
    assert all(m.apply(source) != source for m in mutants)
