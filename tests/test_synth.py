"""The synthetic extracts must be deliveries the contract accepts, and a plausible municipality.

Assertion messages name files, rows and columns, never values: pseudonyms stay out of test output.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter
from datetime import time, timedelta
from pathlib import Path

import numpy as np
import pytest

from ewi import config, synth
from ewi.school_calendar import is_school_holiday, iso_weeks, week_start
from ewi.sources import SOURCES, parse_file_name

# 2026-W44..2027-W06: höstlov, jullov, a 53-week year and the turn of the ISO year.
END_WEEK = "2027-W06"
WEEKS = 16
SEED = 11
PERIODS = iso_weeks("2026-W44", END_WEEK)
AREA_CODES = {row["area_code"] for row in csv.DictReader(config.AREAS_SEED.open(encoding="utf-8"))}
DIGIT_RUN = re.compile(r"[0-9]{10}|[0-9]{6}[-+][0-9]{4}")


class Extracts(dict):
    """source -> [(file, {"dialect", "header", "rows", "line_end"})], in period order.

    Its repr is a count, so a failing test's traceback does not print rows (and pseudonyms)."""

    def __repr__(self) -> str:
        return f"<extracts: {sum(len(files) for files in self.values())} files>"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth")
    return out, synth.generate(out, weeks=WEEKS, end_week=END_WEEK, seed=SEED)


@pytest.fixture(scope="module")
def calm(tmp_path_factory) -> Path:
    """The same seed without rises."""
    out = tmp_path_factory.mktemp("calm")
    synth.generate(out, weeks=WEEKS, end_week=END_WEEK, seed=SEED, rises=False)
    return out


@pytest.fixture(scope="module")
def extracts(generated) -> Extracts:
    out, _ = generated
    found = Extracts({name: [] for name in SOURCES})
    for path in sorted(out.glob("*.csv")):
        delivery = parse_file_name(path.name)
        assert delivery is not None, path.name
        found[delivery.source.name].append((path, read_extract(path)))
    return found


def read_extract(path: Path) -> dict:
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        text, dialect = raw[3:].decode("utf-8"), "utf-8-bom"
    else:
        try:
            text, dialect = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, dialect = raw.decode("cp1252"), "cp1252"
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if ";" in first_line else ","
    if delimiter == ";" and dialect == "utf-8":
        dialect = "cp1252"  # ASCII-only content decodes as both; the semicolon says spreadsheet export
    crlf = text.count("\r\n")
    line_end = "\r\n" if crlf else "\n"
    assert crlf in (0, text.count("\n")), f"{path.name}: mixed line endings"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader)
    rows = [dict(zip(header, values, strict=True)) for values in reader]
    return {"dialect": (dialect, delimiter), "header": header, "rows": rows, "line_end": line_end}


def all_rows(extracts, source: str):
    for path, extract in extracts[source]:
        for number, row in enumerate(extract["rows"], start=2):
            yield path, number, row


def test_summary_and_file_names(generated, extracts):
    out, summary = generated
    assert summary["weeks"] == [PERIODS[0], PERIODS[-1]] and len(PERIODS) == WEEKS
    json.dumps(summary)
    for source, files in extracts.items():
        assert [parse_file_name(p.name).period for p, _ in files] == PERIODS
        assert summary["files"][source] == WEEKS
        assert summary["rows"][source] == sum(len(e["rows"]) for _, e in files)
        for path, _ in files:
            delivery = parse_file_name(path.name)
            # Delivered the Monday after the week, shortly after six.
            assert delivery.delivered.date() == delivery.week_start + timedelta(days=7)
            assert time(6, 0) <= delivery.delivered.time() <= time(6, 30)


def test_headers_and_dialects(extracts):
    dialects, orders = Counter(), Counter()
    for source, files in extracts.items():
        for path, extract in files:
            assert sorted(extract["header"]) == sorted(SOURCES[source].column_names), path.name
            assert len(set(extract["header"])) == len(extract["header"]), path.name
            dialects[extract["dialect"]] += 1
            orders[tuple(extract["header"]) != SOURCES[source].column_names] += 1
    assert dialects[("utf-8", ",")] and dialects[("utf-8-bom", ",")] and dialects[("cp1252", ";")]
    assert set(dialects) <= {("utf-8", ","), ("utf-8-bom", ","), ("cp1252", ";")}
    assert orders[False] > orders[True]  # mostly the contract's order


def test_manifests_match_their_files(generated, extracts):
    out, summary = generated
    manifests = sorted(out.glob("*.manifest.json"))
    assert len(manifests) == summary["manifests"]
    described = {m.name.removesuffix(".manifest.json") for m in manifests}
    school_files = {p.name for p, _ in extracts["school_absence"]}
    assert school_files <= described  # the school system always sends one
    rows_by_file = {p.name: len(e["rows"]) for files in extracts.values() for p, e in files}
    for manifest in manifests:
        body = json.loads(manifest.read_text(encoding="utf-8"))
        name = manifest.name.removesuffix(".manifest.json")
        delivery = parse_file_name(name)
        assert set(body) == {"source", "period", "row_count", "sha256"}
        assert (body["source"], body["period"]) == (delivery.source.name, delivery.period)
        assert body["row_count"] == rows_by_file[name]
        assert body["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()


def test_every_row_keeps_the_contract(extracts):
    problems = []
    for source_name in SOURCES:
        source = SOURCES[source_name]
        for path, number, row in all_rows(extracts, source_name):
            delivery = parse_file_name(path.name)
            low, high = delivery.birth_year_range
            for column in source.columns:
                value = row[column.name]
                if column.pattern and not re.match(column.pattern, value):
                    problems.append((path.name, number, column.name, "pattern"))
                if column.allowed_values and value not in column.allowed_values:
                    problems.append((path.name, number, column.name, "allowed values"))
                if column.minimum is not None and int(value) < column.minimum:
                    problems.append((path.name, number, column.name, "minimum"))
                if column.maximum is not None and int(value) > column.maximum:
                    problems.append((path.name, number, column.name, "maximum"))
            if row["home_area_code"] not in AREA_CODES:
                problems.append((path.name, number, "home_area_code", "register"))
            if not low <= int(row["birth_year"]) <= high:
                problems.append((path.name, number, "birth_year", "age"))
            period_value = row[source.period_column]
            if source.period_column == "iso_week":
                in_period = period_value == delivery.period
            else:
                in_period = period_value in {d.isoformat() for d in delivery.week_dates}
            if not in_period:
                problems.append((path.name, number, source.period_column, "period"))
            if source_name == "school_absence" and int(row["valid_absence_minutes"]) + int(
                row["invalid_absence_minutes"]
            ) > int(row["scheduled_minutes"]):
                problems.append((path.name, number, "valid_absence_minutes", "more than scheduled"))
    assert not problems, problems[:20]


def test_nothing_looks_like_a_personal_identity_number(generated):
    out, _ = generated
    offending = []
    for path in sorted(out.glob("*.csv")):
        for number, line in enumerate(path.read_bytes().decode("cp1252").splitlines(), start=1):
            if DIGIT_RUN.search(line):
                offending.append((path.name, number))
    assert not offending, offending[:20]


def test_the_reading_stage_rejects_no_generated_file(generated):
    """Every file of the generated weeks (every source, both dialects, manifests) passes the ingest's
    reading stage: its identity-number scan of every byte, the header and the manifest checks."""
    from ewi.ingest.reading import Rejection, inspect

    out, _ = generated
    files = sorted(out.glob("*.csv"))
    rejected = []
    for path in files:
        try:
            inspect(path)
        except Rejection as rejection:
            rejected.append((path.name, rejection.code))
    assert len(files) >= 3 * WEEKS - 3
    assert not rejected, rejected[:20]


def test_keys_are_unique(extracts):
    for path, extract in extracts["school_absence"]:
        keys = Counter((r["person_pseudonym"], r["iso_week"], r["school_unit_code"]) for r in extract["rows"])
        assert max(keys.values()) == 1, path.name
    for source, key in (("referrals", "referral_id"), ("contacts", "contact_id")):
        ids = Counter(row[key] for _, _, row in all_rows(extracts, source))
        assert max(ids.values()) == 1, source


def test_holiday_weeks_have_no_lessons(extracts):
    holiday_files = 0
    for path, extract in extracts["school_absence"]:
        rows = extract["rows"]
        minutes = {(r["scheduled_minutes"], r["valid_absence_minutes"], r["invalid_absence_minutes"]) for r in rows}
        if is_school_holiday(parse_file_name(path.name).period):
            holiday_files += 1
            assert minutes == {("0", "0", "0")}, path.name
        else:
            scheduled = [int(r["scheduled_minutes"]) for r in rows]
            assert min(scheduled) >= 1100 and max(scheduled) <= 1700, path.name
    assert holiday_files == 4  # höstlov, weeks 52 and 53, week 1


def test_volumes_are_plausible(extracts):
    for path, extract in extracts["school_absence"]:
        assert 5100 <= len(extract["rows"]) <= 6900, path.name
    per_week = {s: [len(e["rows"]) for _, e in extracts[s]] for s in ("referrals", "contacts")}
    for source, counts in per_week.items():
        assert 22 <= sum(counts) / len(counts) <= 48, source
        assert min(counts) >= 5 and max(counts) <= 90, source
    referred = Counter(row["person_pseudonym"] for _, _, row in all_rows(extracts, "referrals"))
    assert sum(c >= 2 for c in referred.values()) >= 20  # some children are reported again and again


def test_absence_shares_are_plausible(extracts):
    """Over four term weeks, about 10-15 % chronically absent and 5-8 % with invalid absence ≥ 5 %."""
    term = [(p, e) for p, e in extracts["school_absence"] if not is_school_holiday(parse_file_name(p.name).period)]
    totals: dict[str, list[int]] = {}
    for _, extract in term[-4:]:
        for r in extract["rows"]:
            t = totals.setdefault(r["person_pseudonym"], [0, 0, 0])
            t[0] += int(r["scheduled_minutes"])
            t[1] += int(r["valid_absence_minutes"])
            t[2] += int(r["invalid_absence_minutes"])
    chronic = sum(v + i >= 0.1 * s for s, v, i in totals.values()) / len(totals)
    invalid = sum(i >= 0.05 * s for s, _, i in totals.values()) / len(totals)
    assert 0.09 <= chronic <= 0.18
    assert 0.04 <= invalid <= 0.09


def test_signals_overlap_and_people_move(extracts):
    absence: dict[str, list[int]] = {}
    areas: dict[str, set[str]] = {}
    for _, _, r in all_rows(extracts, "school_absence"):
        t = absence.setdefault(r["person_pseudonym"], [0, 0])
        t[0] += int(r["scheduled_minutes"])
        t[1] += int(r["invalid_absence_minutes"])
        areas.setdefault(r["person_pseudonym"], set()).add(r["home_area_code"])
    truants = {p for p, (s, i) in absence.items() if s and i >= 0.05 * s}
    others = set(absence) - truants
    for source in ("referrals", "contacts"):
        met = {row["person_pseudonym"] for _, _, row in all_rows(extracts, source)}
        truants_met, others_met = len(met & truants) / len(truants), len(met & others) / len(others)
        assert truants_met > 2 * others_met, source
    movers = sum(len(a) > 1 for a in areas.values()) / len(areas)
    assert 0.01 <= movers <= 0.06


def test_ground_truth(generated):
    out, summary = generated
    truth = json.loads((out / "ground_truth.json").read_text(encoding="utf-8"))
    assert truth["seed"] == SEED and truth["weeks"] == [PERIODS[0], PERIODS[-1]]
    assert 3 <= len(truth["rises"]) == summary["rises"] <= 5
    assert {r["indicator"] for r in truth["rises"]} <= set(synth.INDICATORS)
    for rise in truth["rises"]:
        assert set(rise) == {"area_code", "indicator", "first_week", "week_start", "size", "duration_weeks",
                             "measure", "baseline", "full_size_week", "injected"}
        assert rise["area_code"] in AREA_CODES
        assert rise["week_start"] == week_start(rise["first_week"]).isoformat()
        first = PERIODS.index(rise["first_week"])
        assert first + rise["duration_weeks"] <= len(PERIODS) and rise["duration_weeks"] >= 2
        assert rise["size"] > 1
        # Both measures are 4-week quantities: full size once the window lies inside the rise.
        assert rise["full_size_week"] == PERIODS[first + 3]
        assert rise["baseline"] > 0
        if rise["indicator"] in ("chronic_absence", "invalid_absence"):
            assert not is_school_holiday(rise["first_week"])
            assert rise["measure"] == "share" and rise["baseline"] < 1
            injected = rise["injected"]
            # Sized against the area's own expected flagged pupils, to within one pupil.
            assert injected["expected_added_flags"] == pytest.approx(
                (rise["size"] - 1) * injected["expected_flags_without"], abs=1)
            assert injected["pupils_boosted"] >= injected["expected_added_flags"]
        else:
            assert rise["measure"] == "4-week count"
            # A youth with two events counts once, so the event rate rises a little more than the size.
            assert rise["size"] <= rise["injected"]["rate_multiplier"] < 1.1 * rise["size"]


def test_same_seed_same_bytes_other_seed_other_world(generated, tmp_path):
    out, summary = generated
    again = synth.generate(tmp_path / "again", weeks=WEEKS, end_week=END_WEEK, seed=SEED)
    assert again["rows"] == summary["rows"]
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert first == {p.name: p.read_bytes() for p in (tmp_path / "again").iterdir()}

    other = tmp_path / "other"
    synth.generate(other, weeks=4, end_week=END_WEEK, seed=SEED + 1)
    school = sorted(other.glob("school_absence_*.csv"))[-1]
    same_week = next(p for p in out.glob(f"school_absence_{PERIODS[-1]}_*.csv"))
    assert school.read_bytes() != same_week.read_bytes()


def test_rises_only_change_their_area_and_weeks(generated, calm):
    """Without rises the same seed gives the same world, except where the rises were injected: other
    weeks byte for byte, and in the rise's weeks every other area's rows (school) and counts (referrals,
    contacts: the rise's extra events come from their own random stream)."""
    out, _ = generated
    assert json.loads((calm / "ground_truth.json").read_text())["rises"] == []
    truth = json.loads((out / "ground_truth.json").read_text())
    touched: dict[str, set[str]] = {}
    for rise in truth["rises"]:
        first = PERIODS.index(rise["first_week"])
        source = "school_absence" if rise["indicator"].endswith("absence") else rise["indicator"]
        touched.setdefault(source, set()).update(PERIODS[first : first + rise["duration_weeks"]])
    for path in sorted(out.glob("*.csv")):
        delivery = parse_file_name(path.name)
        same = path.read_bytes() == (calm / path.name).read_bytes()
        if delivery.period not in touched.get(delivery.source.name, set()):
            assert same, path.name
    for rise in truth["rises"]:
        first = PERIODS.index(rise["first_week"])
        window = PERIODS[first : first + rise["duration_weeks"]]
        source = "school_absence" if rise["indicator"].endswith("absence") else rise["indicator"]
        with_rise = _area_signal(out, source, window, rise)
        without = _area_signal(calm, source, window, rise)
        assert with_rise > without, rise["indicator"]
        for period in window:
            rows = {name: read_extract(next(folder.glob(f"{source}_{period}_*.csv")))["rows"]
                    for name, folder in (("with", out), ("without", calm))}
            others = {name: [r for r in found if r["home_area_code"] != rise["area_code"]]
                      for name, found in rows.items()}
            if source == "school_absence":
                assert others["with"] == others["without"], period
            else:
                areas = {name: Counter(r["home_area_code"] for r in found) for name, found in others.items()}
                assert areas["with"] == areas["without"], period


def test_absence_rises_have_their_size_against_the_areas_own_level(tmp_path):
    """From the rise's 4th week on the area has about (size - 1) x its own expected flagged pupils
    more than the same seed without the rise, and that expectation matches the pupils flagged without
    it. Checked in term weeks whose 4-week window has no holiday (a shorter window flags differently):
    autumn term 2026, where this seed puts three absence rises."""
    periods = iso_weeks("2026-W32", "2026-W51")
    folders = {"with": tmp_path / "with", "without": tmp_path / "without"}
    for name, folder in folders.items():
        synth.generate(folder, weeks=len(periods), end_week=periods[-1], seed=3, rises=name == "with")
    truth = json.loads((folders["with"] / "ground_truth.json").read_text())
    checked = 0
    for rise in truth["rises"]:
        if rise["indicator"] not in ("chronic_absence", "invalid_absence"):
            continue
        first = periods.index(rise["first_week"])
        weeks = [w for w in range(first + 3, first + rise["duration_weeks"])
                 if not any(is_school_holiday(p) for p in periods[w - 3: w + 1])]
        flagged = {name: sum(_flagged_pupils(folder, periods, rise, w) for w in weeks) / len(weeks)
                   for name, folder in folders.items()}
        assert flagged["with"] - flagged["without"] == pytest.approx(rise["injected"]["expected_added_flags"], rel=0.2)
        assert flagged["without"] == pytest.approx(rise["injected"]["expected_flags_without"], rel=0.2)
        checked += 1
    assert checked == 3


def test_count_rises_multiply_the_youths_with_an_event():
    """The event-rate factor makes the expected number of *youths* with an event size times larger."""
    rng = np.random.default_rng(0)
    rate = rng.gamma(0.4, 0.5, 400)  # a skewed area: some youths have several events a week
    m = synth._distinct_multiplier(rate, 2.0)
    assert m > 2.0
    assert -np.expm1(-m * rate).sum() == pytest.approx(2.0 * -np.expm1(-rate).sum(), rel=1e-9)
    draws = rng.poisson(rate, (4000, len(rate))) > 0
    raised = rng.poisson(m * rate, (4000, len(rate))) > 0
    assert raised.sum(axis=1).mean() / draws.sum(axis=1).mean() == pytest.approx(2.0, rel=0.02)


def _flagged_pupils(folder: Path, periods: list[str], rise: dict, w: int) -> int:
    """Pupils of the rise's area flagged by the indicator's trailing 4-week rule in week index w."""
    totals: dict[str, list[int]] = {}
    for period in periods[max(0, w - 3): w + 1]:
        for r in read_extract(next(folder.glob(f"school_absence_{period}_*.csv")))["rows"]:
            t = totals.setdefault(r["person_pseudonym"], [0, 0, 0, ""])
            t[0] += int(r["scheduled_minutes"])
            t[1] += int(r["valid_absence_minutes"])
            t[2] += int(r["invalid_absence_minutes"])
            t[3] = r["home_area_code"]
    threshold, part = (0.10, (1, 2)) if rise["indicator"] == "chronic_absence" else (0.05, (2,))
    return sum(1 for t in totals.values()
               if t[3] == rise["area_code"] and t[0] and sum(t[i] for i in part) >= threshold * t[0])


def _area_signal(out: Path, source: str, window: list[str], rise: dict) -> float:
    total = 0.0
    for period in window:
        path = next(out.glob(f"{source}_{period}_*.csv"))
        rows = [r for r in read_extract(path)["rows"] if r["home_area_code"] == rise["area_code"]]
        if source != "school_absence":
            total += len(rows)
        elif rise["indicator"] == "chronic_absence":
            total += sum(int(r["valid_absence_minutes"]) + int(r["invalid_absence_minutes"]) for r in rows)
        else:
            total += sum(int(r["invalid_absence_minutes"]) for r in rows)
    return total


def test_benchmark_week_streams_exactly_the_rows(tmp_path):
    path = synth.write_school_absence_week(tmp_path, rows=2500, period="2026-W47", seed=3, chunk_rows=1000)
    delivery = parse_file_name(path.name)
    assert delivery is not None and delivery.period == "2026-W47"
    extract = read_extract(path)
    assert extract["header"] == list(SOURCES["school_absence"].column_names)
    rows = extract["rows"]
    assert len(rows) == 2500
    distinct = len({r["person_pseudonym"] for r in rows})
    assert distinct == 2500
    low, high = delivery.birth_year_range
    pseudonym = re.compile(SOURCES["school_absence"].column("person_pseudonym").pattern)
    bad = [
        number
        for number, r in enumerate(rows, start=2)
        if not (
            pseudonym.match(r["person_pseudonym"])
            and re.fullmatch(r"[0-9]{8}", r["school_unit_code"])
            and r["home_area_code"] in AREA_CODES
            and low <= int(r["birth_year"]) <= high
            and r["iso_week"] == "2026-W47"
            and 0 < int(r["scheduled_minutes"]) <= 3000
            and int(r["valid_absence_minutes"]) + int(r["invalid_absence_minutes"]) <= int(r["scheduled_minutes"])
        )
    ]
    assert not bad, bad[:20]
    identity_like = len(DIGIT_RUN.findall(path.read_text(encoding="utf-8")))
    assert identity_like == 0
    manifest = json.loads(Path(f"{path}.manifest.json").read_text())
    assert manifest == {"source": "school_absence", "period": "2026-W47", "row_count": 2500,
                        "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def test_default_end_week_is_the_last_complete_week():
    from datetime import date

    assert synth.last_complete_week(date(2026, 11, 23)) == "2026-W47"  # a Monday
    assert synth.last_complete_week(date(2026, 11, 29)) == "2026-W47"  # the Sunday of W48
    assert synth.last_complete_week(date(2027, 1, 4)) == "2026-W53"
