"""Small contract-valid extract files for tests, written as real files a test can then break."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import datetime, timedelta
from pathlib import Path

from ewi.sources import SOURCES, iso_week_start

AREAS = ["2081C1010", "2081C1020", "2081C1030", "2081B1200"]


def pseudonym(i: int) -> str:
    return hashlib.sha256(f"test-person-{i}".encode()).hexdigest()


def rows_for(source: str, period: str, n: int = 40, id_offset: int = 0) -> list[dict]:
    start = iso_week_start(period)
    year = int(period[:4])
    rows = []
    for i in range(n):
        base = {"person_pseudonym": pseudonym(i), "home_area_code": AREAS[i % len(AREAS)],
                "birth_year": str(year - 8 - i % 10)}
        if source == "school_absence":
            base.update(iso_week=period, school_unit_code="12345678", scheduled_minutes="1500",
                        valid_absence_minutes=str(i % 7 * 10), invalid_absence_minutes=str(i % 3 * 15))
        elif source == "referrals":
            base.update(referral_id=f"R{period}-{id_offset + i}", received_date=str(start + timedelta(days=i % 7)),
                        reporter_category="school", concern_category="school_absence")
        else:
            base.update(contact_id=f"C{period}-{id_offset + i}", contact_date=str(start + timedelta(days=i % 7)),
                        contact_type="outreach_worker", agency="social_services")
        rows.append(base)
    return rows


def file_name(source: str, period: str, delivered: datetime | None = None) -> str:
    delivered = delivered or datetime.combine(iso_week_start(period) + timedelta(days=7), datetime.min.time()).replace(hour=6)
    return f"{source}_{period}_{delivered:%Y%m%dT%H%M}.csv"


def render(rows: list[dict], columns: list[str], delimiter: str = ",", encoding: str = "utf-8",
           bom: bool = False) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([r.get(c, "") for c in columns])
    data = buf.getvalue().encode(encoding)
    return (b"\xef\xbb\xbf" + data) if bom else data


def write(directory: Path, source: str, period: str, *, rows: list[dict] | None = None,
          columns: list[str] | None = None, name: str | None = None, delivered: datetime | None = None,
          manifest: bool = False, content: bytes | None = None, **render_kwargs) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rows = rows if rows is not None else rows_for(source, period)
    columns = columns or list(SOURCES[source].column_names)
    data = content if content is not None else render(rows, columns, **render_kwargs)
    path = directory / (name or file_name(source, period, delivered))
    path.write_bytes(data)
    if manifest:
        write_manifest(path, source, period, len(rows), hashlib.sha256(data).hexdigest())
    return path


def write_manifest(path: Path, source: str, period: str, row_count: int, sha256: str) -> Path:
    m = path.with_name(path.name + ".manifest.json")
    m.write_text(json.dumps({"source": source, "period": period, "row_count": row_count, "sha256": sha256}))
    return m
