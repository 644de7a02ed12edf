"""Files the ingest must refuse without echoing them, through the real `ewi ingest` command.

Each test writes a real bad file (or a symbolic link, a named pipe), runs the `ewi` console script
on it as an operator would, and checks three things: the file is rejected with the expected reason
code, an audit record of the refusal exists, and nothing of the file's content (no cell, no header
name) appears in the reason, in audit.batches or on the command's output.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ewi.sources import SOURCES
from tests import extracts

DB = WAREHOUSE_DB = "ewi_refusal_tests"
EWI = os.path.join(os.path.dirname(sys.executable), "ewi")
# Values that stand for what a wrong file may carry: a name, an address, a free-text column name.
NAME, ADDRESS, PSEUDONYM = "Annika Lindqvist", "Storgatan 12", extracts.pseudonym(7)


@pytest.fixture(scope="module")
def conn(module_db):
    return module_db


def ewi_ingest(path: Path, timeout: float = 60) -> tuple[dict, str]:
    """Run `ewi ingest PATH --json`; returns its one JSON line and everything it printed."""
    out = subprocess.run([EWI, "ingest", str(path), "--json"], capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, "EWI_WAREHOUSE_DB": DB})
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert out.returncode == 3 and len(lines) == 1, f"exit {out.returncode}, {len(lines)} JSON lines"
    return lines[0], out.stdout + out.stderr


def audit_row(conn, batch_id: str) -> dict:
    cur = conn.execute("select * from audit.batches where batch_id = %s", (batch_id,))
    row = cur.fetchone()
    assert row is not None, "no audit record of the refusal"
    return dict(zip([d.name for d in cur.description], row, strict=True))


def assert_refused(conn, path: Path, code: str, content: list[str], read: bool = True) -> dict:
    """Rejected with `code`, recorded, and none of `content` in the reason, the record or the output.
    `read`: the file is regular, so its checksum and size are recorded; else neither is."""
    result, printed = ewi_ingest(path)
    assert result["status"] == "rejected" and result["reason"].startswith(code + ":"), result["reason"]
    row = audit_row(conn, result["batch_id"])
    assert row["status"] == "rejected" and row["reason"] == result["reason"]
    assert row["file_name"] == path.name
    if read:
        assert row["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert row["file_size"] == path.stat().st_size
    else:
        assert row["file_sha256"] is None and row["file_size"] is None
    recorded = json.dumps(row, default=str)
    # Short tokens (a birth year) could match a batch id's hex digits by chance: they are left out.
    leaked = [i for i, token in enumerate(content) if len(token) >= 6
              and (token in result["reason"] or token in recorded or token in printed)]
    assert not leaked, f"content tokens {leaked} (by index) echoed"
    return result


def contacts_row(period: str) -> list[str]:
    row = extracts.rows_for("contacts", period, n=1)[0]
    return [row[c] for c in SOURCES["contacts"].column_names]


# --- content never echoed ----------------------------------------------------------------------

def test_a_file_without_header_row_is_refused_by_counts_not_by_its_first_row(conn, tmp_path):
    period = "2022-W10"
    first = [PSEUDONYM, NAME, ADDRESS, "2081C1010", "2012", "outreach_worker", "social_services"]
    data = "\n".join(",".join(first if i == 0 else contacts_row(period)) for i in range(5)) + "\n"
    path = extracts.write(tmp_path, "contacts", period, content=data.encode())
    result = assert_refused(conn, path, "missing_columns", first)
    assert "none of the contract's 7 columns" in result["reason"]
    assert "7 of 7 header field(s) outside the contract, at position(s) 1, 2, 3, 4, 5, 6, 7" in result["reason"]


def test_the_plain_output_of_a_refusal_holds_no_content_either(conn, tmp_path):
    period = "2022-W30"
    first = [PSEUDONYM, NAME, ADDRESS, "2081C1020", "2011", "police", "social_services"]
    data = "\n".join(",".join(first if i == 0 else contacts_row(period)) for i in range(3)) + "\n"
    path = extracts.write(tmp_path, "contacts", period, content=data.encode())
    out = subprocess.run([EWI, "ingest", str(path)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "EWI_WAREHOUSE_DB": DB})
    assert out.returncode == 3
    assert "rejected" in out.stdout and "missing_columns: none of the contract's 7 columns" in out.stdout
    printed = out.stdout + out.stderr
    assert not [i for i, token in enumerate(first) if len(token) >= 6 and token in printed]


def test_an_unexpected_column_is_named_by_its_position(conn, tmp_path):
    columns = [*SOURCES["referrals"].column_names, "handlaggare_anteckning"]
    path = extracts.write(tmp_path, "referrals", "2022-W11", columns=columns)
    result = assert_refused(conn, path, "unexpected_columns", ["handlaggare_anteckning", "anteckning"])
    assert result["reason"] == "unexpected_columns: 1 of 8 header field(s) outside the contract, at position(s) 8"


def test_a_renamed_column_names_the_missing_contract_column_but_not_the_new_name(conn, tmp_path):
    columns = ["omrade_kod" if c == "home_area_code" else c for c in SOURCES["contacts"].column_names]
    path = extracts.write(tmp_path, "contacts", "2022-W12", columns=columns)
    result = assert_refused(conn, path, "missing_columns", ["omrade_kod"])
    assert result["reason"] == ("missing_columns: missing column(s): home_area_code; "
                                "1 of 7 header field(s) outside the contract, at position(s) 4")


def test_a_column_named_like_an_identifier_is_named_by_its_position(conn, tmp_path):
    columns = [*SOURCES["contacts"].column_names[:2], "vardnadshavare_namn", *SOURCES["contacts"].column_names[2:]]
    path = extracts.write(tmp_path, "contacts", "2022-W13", columns=columns)
    result = assert_refused(conn, path, "direct_identifier", ["vardnadshavare", "namn"])
    assert "at position(s) 3" in result["reason"]


def test_a_repeated_column_is_named_by_its_positions(conn, tmp_path):
    columns = [*SOURCES["contacts"].column_names, "agency"]
    path = extracts.write(tmp_path, "contacts", "2022-W14", columns=columns)
    result = assert_refused(conn, path, "dialect", ["agency"])
    assert result["reason"] == "dialect: the header repeats a column name, at positions 7, 8"


def test_a_row_with_more_fields_than_the_header_is_malformed_by_line_number_only(conn, tmp_path):
    period = "2022-W15"
    data = extracts.render(extracts.rows_for("contacts", period), list(SOURCES["contacts"].column_names))
    lines = data.decode().splitlines()
    lines[3] += f",{NAME},{ADDRESS}"
    path = extracts.write(tmp_path, "contacts", period, content=("\n".join(lines) + "\n").encode())
    result = assert_refused(conn, path, "malformed", [NAME, ADDRESS, *lines[3].split(",")])
    assert result["reason"] == "malformed: rows do not parse as the header's columns at line 4"


def test_a_row_with_fewer_fields_than_the_header_is_malformed_by_line_number_only(conn, tmp_path):
    period = "2022-W16"
    data = extracts.render(extracts.rows_for("referrals", period), list(SOURCES["referrals"].column_names))
    lines = data.decode().splitlines()
    short = lines[10].split(",")[:4]
    lines[10] = ",".join(short)
    path = extracts.write(tmp_path, "referrals", period, content=("\n".join(lines) + "\n").encode())
    result = assert_refused(conn, path, "malformed", short)
    assert result["reason"] == "malformed: rows do not parse as the header's columns at line 11"


# --- size bounds -------------------------------------------------------------------------------

def test_a_file_of_one_long_line_is_refused_and_recorded(conn, tmp_path):
    """The header row alone, repeated to 8 MB without a line break: refused at the line bound, not
    by a CSV error, and with an audit record."""
    header = ",".join(SOURCES["school_absence"].column_names)
    line = ",".join([header] * (8_000_000 // (len(header) + 1)))
    path = extracts.write(tmp_path, "school_absence", "2022-W17", content=line.encode())
    result = assert_refused(conn, path, "line_too_long", [header, "person_pseudonym"])
    assert result["reason"] == "line_too_long: line 1 is longer than 65536 bytes (the contract's lines are about 200)"


def test_a_long_line_after_good_ones_is_refused_with_its_number(conn, tmp_path):
    period = "2022-W18"
    data = extracts.render(extracts.rows_for("contacts", period), list(SOURCES["contacts"].column_names))
    lines = data.decode().splitlines()
    cells = lines[20].split(",")
    lines[20] = ",".join(cells * 2000)  # a valid row's cells, 2000 times over on one line
    path = extracts.write(tmp_path, "contacts", period, content=("\n".join(lines) + "\n").encode())
    result = assert_refused(conn, path, "line_too_long", cells)
    assert result["reason"].startswith("line_too_long: line 21 is longer than 65536 bytes")


def test_a_field_longer_than_the_bound_is_refused_with_its_line(conn, tmp_path):
    period = "2022-W19"
    rows = extracts.rows_for("referrals", period)
    rows[4]["concern_category"] = f"{NAME} {ADDRESS} " * 100  # free text of 3 KB in one field
    path = extracts.write(tmp_path, "referrals", period, rows=rows)
    result = assert_refused(conn, path, "field_too_long", [NAME, ADDRESS, rows[4]["referral_id"]])
    assert result["reason"] == "field_too_long: a field on line 6 is longer than 1024 bytes"


def test_a_long_field_past_the_first_megabyte_is_refused_with_its_line(conn, tmp_path):
    """The file is read in blocks of 1 MiB; the line number counts the lines of earlier blocks."""
    period = "2022-W29"
    rows = extracts.rows_for("contacts", period, n=12_000)
    rows[11_000]["agency"] = NAME * 100
    path = extracts.write(tmp_path, "contacts", period, rows=rows)
    assert path.stat().st_size > 1.2 * (1 << 20)
    result = assert_refused(conn, path, "field_too_long", [NAME, rows[11_000]["contact_id"]])
    assert result["reason"] == "field_too_long: a field on line 11002 is longer than 1024 bytes"


def test_a_long_header_of_quotes_and_semicolons_is_refused_by_counts(conn, tmp_path):
    """Within the line bound, but the kind of line that csv.Sniffer takes quadratic time over
    (docs/benchmarks.md); the delimiter is decided on its first KiB."""
    data = ('"x;' * 21_000 + "\n").encode()
    path = extracts.write(tmp_path, "school_absence", "2022-W31", content=data)
    result = assert_refused(conn, path, "dialect", ['"x;"x;"x'])
    assert result["reason"].startswith("dialect: the header repeats a column name, at positions 1, 2, 3,")
    assert result["reason"].endswith(", 19, 20, …")


def test_a_header_with_a_carriage_return_inside_is_refused_not_crashed(conn, tmp_path):
    columns = list(SOURCES["contacts"].column_names)
    data = (",".join(columns[:3]) + "\rx" + NAME + "," + ",".join(columns[3:]) + "\n").encode()
    path = extracts.write(tmp_path, "contacts", "2022-W20", content=data)
    assert_refused(conn, path, "dialect", [NAME])


# --- anything but a regular file ---------------------------------------------------------------

def test_a_symbolic_link_to_another_file_is_refused_without_reading_it(conn, tmp_path):
    secret = tmp_path / "elsewhere" / "register.csv"
    secret.parent.mkdir()
    secret.write_text(f"{NAME},{ADDRESS},{PSEUDONYM}\n" * 3)
    link = tmp_path / extracts.file_name("contacts", "2022-W21")
    link.symlink_to(secret)
    result = assert_refused(conn, link, "not_a_regular_file", [NAME, ADDRESS, PSEUDONYM, "register", "elsewhere"],
                            read=False)
    assert result["reason"] == ("not_a_regular_file: the path is a symbolic link, not a regular file; "
                                "nothing of it was read")


def test_a_symbolic_link_to_dev_zero_is_refused_at_once(conn, tmp_path):
    link = tmp_path / extracts.file_name("referrals", "2022-W22")
    link.symlink_to("/dev/zero")
    assert_refused(conn, link, "not_a_regular_file", [], read=False)


def test_a_named_pipe_is_refused_without_opening_it(conn, tmp_path):
    fifo = tmp_path / extracts.file_name("school_absence", "2022-W23")
    os.mkfifo(fifo)
    result = assert_refused(conn, fifo, "not_a_regular_file", [], read=False)
    assert "a named pipe" in result["reason"]


def test_a_dangling_symbolic_link_is_refused_and_recorded(conn, tmp_path):
    link = tmp_path / extracts.file_name("contacts", "2022-W24")
    link.symlink_to(tmp_path / "gone.csv")
    assert_refused(conn, link, "not_a_regular_file", ["gone"], read=False)


def test_a_delivery_in_a_folder_reached_through_a_link_is_taken(conn, tmp_path):
    """Only the file itself must not be a link: a landing folder may be a link to a mount."""
    path = extracts.write(tmp_path / "mount", "contacts", "2022-W32")
    (tmp_path / "landing").symlink_to(tmp_path / "mount")
    out = subprocess.run([EWI, "ingest", str(tmp_path / "landing" / path.name), "--json"], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "EWI_WAREHOUSE_DB": DB})
    [result] = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert out.returncode == 0 and result["status"] == "published" and result["rows"] == 40


def test_a_directory_named_like_a_delivery_is_refused_by_the_ingest(conn, tmp_path):
    """The command line turns a directory away as a usage error; the ingest itself (which the DAG
    calls with paths) refuses and records it."""
    from ewi.ingest import ingest_files

    folder = tmp_path / extracts.file_name("contacts", "2022-W25")
    folder.mkdir()
    [result] = ingest_files([folder])
    assert result.status == "rejected" and result.reason.startswith("not_a_regular_file: the path is a directory")
    assert audit_row(conn, result.batch_id)["file_sha256"] is None


def test_a_manifest_that_is_a_symbolic_link_or_a_named_pipe_is_refused(conn, tmp_path):
    for week, make in (("2022-W26", lambda m: m.symlink_to("/dev/zero")), ("2022-W27", os.mkfifo)):
        path = extracts.write(tmp_path, "contacts", week)
        make(path.with_name(path.name + ".manifest.json"))
        result = assert_refused(conn, path, "manifest", [])
        assert result["reason"] == "manifest: the manifest sidecar is not a regular file; it was not read"


def test_a_manifest_larger_than_its_bound_is_refused(conn, tmp_path):
    path = extracts.write(tmp_path, "contacts", "2022-W28")
    path.with_name(path.name + ".manifest.json").write_text(json.dumps({"note": NAME * 5000}))
    result = assert_refused(conn, path, "manifest", [NAME])
    assert result["reason"] == "manifest: the manifest sidecar is larger than 65536 bytes"
