"""The source registry: the one place that defines each extract of ../shared/contracts/SOURCES.md.

The loader (column set, pending and published tables), the Great Expectations suites in
expectations/, the dbt sources and the docs are generated from, or tested against, these objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

PSEUDONYM_PATTERN = r"^[0-9a-f]{64}$"
ISO_WEEK_PATTERN = r"^[0-9]{4}-W[0-9]{2}$"
INT_PATTERN = r"^-?[0-9]{1,9}$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
AREA_CODE_PATTERN = r"^[0-9]{4}[A-C][0-9]{4}$"
#: The contract says only "text"; free text could carry names (docs/decisions.md).
RECORD_ID_PATTERN = r"^[A-Za-z0-9_-]{1,40}$"

#: Header names that betray a direct identifier (name, identity number, contact details). A file
#: carrying such a column is rejected whole, whatever the column holds.
IDENTIFIER_COLUMN_RE = re.compile(
    r"(person_?nr|personnummer|personal_?(identity|id)|pnr|ssn|samordningsnummer|"
    r"namn|name|f[oö]rnamn|efternamn|adress|address|e_?mail|epost|telefon|phone|mobil)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str  # the published type: text, integer or date
    description: str
    pattern: str | None = None  # what the text in the file must look like
    allowed_values: tuple[str, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None

    @property
    def load_type(self) -> str:
        """The column's type in a pending batch. COPY parses integers itself, in the same pass as
        the load and far cheaper than a regular expression per value; a file with a value that does
        not parse is loaded again as text and fails the suite's type check. Dates stay text: the
        suite compares them with the delivery's own dates, which PostgreSQL's lenient date input
        would not be strict enough for."""
        return "integer" if self.sql_type == "integer" else "text"


@dataclass(frozen=True)
class Source:
    name: str
    description: str
    system: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    #: "batch": the key is unique within one delivery (and a correction replaces the period);
    #: "source": the key is unique across every delivery the source ever made.
    key_scope: str
    #: the column whose value must lie inside the delivery's ISO week
    period_column: str
    age_range: tuple[int, int]
    extra_rules: tuple[str, ...] = field(default_factory=tuple)
    #: raw.<source> is list-partitioned by period_column, one partition per published batch
    partitioned: bool = False

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def pending_columns(self) -> tuple[str, ...]:
        """The columns of a batch's pending table. A partitioned source's batch becomes a partition
        of its own, where the batch id is a constant: it is added as the column's default when the
        batch is attached (no row is written again), instead of being loaded into every row."""
        return self.column_names if self.partitioned else ("batch_id", *self.column_names)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def raw_table(self) -> str:
        return f"raw.{self.name}"

    @property
    def quarantine_table(self) -> str:
        return f"quarantine.{self.name}"


def _pseudonym() -> Column:
    return Column(
        "person_pseudonym",
        "text",
        "HMAC-SHA256 of the personal identity number, 64 lower-case hex characters.",
        pattern=PSEUDONYM_PATTERN,
    )


def _area() -> Column:
    return Column(
        "home_area_code",
        "text",
        "The person's home area; must exist in the area register.",
        pattern=AREA_CODE_PATTERN,
    )


def _birth_year() -> Column:
    return Column("birth_year", "integer", "Year of birth.", pattern=INT_PATTERN)


def _record_id(name: str, description: str) -> Column:
    return Column(name, "text", description, pattern=RECORD_ID_PATTERN)


def _event_date(name: str, description: str) -> Column:
    return Column(name, "date", description, pattern=DATE_PATTERN)


SCHOOL_ABSENCE = Source(
    name="school_absence",
    description="School information system, weekly: one row per pupil and ISO week.",
    system="school information system",
    columns=(
        _pseudonym(),
        Column("iso_week", "text", "ISO week YYYY-Www, equal to the file's period.", pattern=ISO_WEEK_PATTERN),
        Column("school_unit_code", "text", "Skolenhetskod, 8 digits.", pattern=r"^[0-9]{8}$"),
        _area(),
        _birth_year(),
        Column("scheduled_minutes", "integer", "Scheduled teaching minutes in the week.",
               pattern=INT_PATTERN, minimum=0, maximum=3000),
        Column("valid_absence_minutes", "integer", "Valid (reported) absence in minutes.",
               pattern=INT_PATTERN, minimum=0),
        Column("invalid_absence_minutes", "integer", "Invalid (unreported) absence in minutes.",
               pattern=INT_PATTERN, minimum=0),
    ),
    key=("person_pseudonym", "iso_week", "school_unit_code"),
    key_scope="batch",
    period_column="iso_week",
    age_range=(6, 20),
    extra_rules=("valid_absence_minutes + invalid_absence_minutes <= scheduled_minutes",),
    partitioned=True,
)

REFERRALS = Source(
    name="referrals",
    description="Social services case system (orosanmälningar), weekly: one row per report of concern.",
    system="social services case system",
    columns=(
        _record_id("referral_id", "Case system id of the report; unique across all deliveries."),
        _pseudonym(),
        _event_date("received_date", "Date the report was received, inside the file's ISO week."),
        _area(),
        _birth_year(),
        Column("reporter_category", "text", "Who reported the concern.",
               allowed_values=("school", "police", "healthcare", "social_services", "family", "anonymous", "other")),
        Column("concern_category", "text", "What the concern is about.",
               allowed_values=("violence", "crime", "substance_use", "school_absence", "mental_health",
                               "neglect", "other")),
    ),
    key=("referral_id",),
    key_scope="source",
    period_column="received_date",
    age_range=(0, 20),
)

CONTACTS = Source(
    name="contacts",
    description="Police and outreach contact registers, weekly: one row per contact with a young person.",
    system="police and outreach contact registers",
    columns=(
        _record_id("contact_id", "Register id of the contact; unique across all deliveries."),
        _pseudonym(),
        _event_date("contact_date", "Date of the contact, inside the file's ISO week."),
        _area(),
        _birth_year(),
        Column("contact_type", "text", "Kind of contact.",
               allowed_values=("police_intervention", "outreach_worker", "exit_programme", "youth_centre", "other")),
        Column("agency", "text", "Agency that made the contact.",
               allowed_values=("police", "social_services", "leisure", "school")),
    ),
    key=("contact_id",),
    key_scope="source",
    period_column="contact_date",
    age_range=(6, 20),
)

SOURCES: dict[str, Source] = {s.name: s for s in (SCHOOL_ABSENCE, REFERRALS, CONTACTS)}

#: The contract's file-name pattern, <source>_<YYYY-Www>_<YYYYMMDDTHHMM>.csv, for the sources above.
#: The landing folder's watcher, the ingest run's planner and the ingest itself all match with it.
FILE_NAME_RE = re.compile(
    rf"^(?P<source>{'|'.join(map(re.escape, SOURCES))})_(?P<period>[0-9]{{4}}-W[0-9]{{2}})_"
    r"(?P<delivered>[0-9]{8}T[0-9]{4})\.csv$"
)


@dataclass(frozen=True)
class Delivery:
    """What a file name says about a delivery."""

    source: Source
    period: str  # ISO week, YYYY-Www
    delivered: datetime

    @property
    def week_start(self) -> date:
        return iso_week_start(self.period)

    @property
    def week_dates(self) -> list[date]:
        return [self.week_start + timedelta(days=i) for i in range(7)]

    @property
    def birth_year_range(self) -> tuple[int, int]:
        # The contract speaks of age in the period year; the ISO year is the period's year.
        year = int(self.period[:4])
        low_age, high_age = self.source.age_range
        return year - high_age, year - low_age


def iso_week_start(period: str) -> date:
    year, week = int(period[:4]), int(period[6:8])
    return date.fromisocalendar(year, week, 1)


def iso_week_of(day: date) -> str:
    iso = day.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def parse_file_name(file_name: str) -> Delivery | None:
    """The delivery a contract-conforming file name describes, or None."""
    match = FILE_NAME_RE.match(file_name)
    if not match:
        return None
    try:
        week_start = iso_week_start(match["period"])
        delivered = datetime.strptime(match["delivered"], "%Y%m%dT%H%M")
    except ValueError:
        return None
    if iso_week_of(week_start) != match["period"]:
        return None
    return Delivery(SOURCES[match["source"]], match["period"], delivered)


def file_name_for(source: str, period: str, delivered: datetime) -> str:
    return f"{source}_{period}_{delivered:%Y%m%dT%H%M}.csv"
