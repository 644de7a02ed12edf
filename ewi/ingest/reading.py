"""Reading a delivered file as the contract, before any of its content reaches the warehouse.

One streaming pass decides the encoding, counts rows and scans every byte for personal identity
numbers; the file is never held in memory whole. Reject reasons are fixed texts plus, at most,
column names from the header (scanned first): no cell content is ever echoed.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ewi.ingest.identifiers import CANDIDATE_RE, bytes_contain_identity_number, is_identity_number
from ewi.sources import IDENTIFIER_COLUMN_RE, Delivery, parse_file_name

CHUNK = 1 << 20


class Rejection(Exception):
    """The file cannot be taken as a delivery; `code` is the stable reason code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass
class Inspection:
    path: Path
    file_name: str
    size: int
    sha256: str
    delivery: Delivery | None = None
    encoding: str | None = None  # postgres COPY encoding name: UTF8 or WIN1252
    delimiter: str | None = None
    header: list[str] = field(default_factory=list)
    rows: int | None = None
    ends_with_newline: bool = True


def fingerprint(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def safe_file_name(name: str) -> str:
    """The file name as it may be recorded: a name that itself carries an identity number is
    recorded redacted."""
    def redact(m):
        return "[redacted]" if is_identity_number(m[1], m[2]) else m[0]

    return CANDIDATE_RE.sub(redact, name)[:255]


def _scan(path: Path, encoding: str) -> tuple[int, bool, bool, str]:
    """Decode the whole file strictly and scan it for identity numbers, a block of whole lines at a
    time (so no number is split between blocks). Returns (newline count, ends with newline, found
    an identity number, first line)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    newlines = 0
    carry = b""
    first_line = None
    last_byte = b""
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(CHUNK)
            final = not chunk
            decoder.decode(chunk, final=final)
            if chunk:
                last_byte = chunk[-1:]
                newlines += chunk.count(b"\n")
            block = carry + chunk
            cut = len(block) if final else block.rfind(b"\n") + 1
            lines, carry = block[:cut], block[cut:]
            if first_line is None and (b"\n" in lines or final):
                first_line = lines.split(b"\n", 1)[0].decode(encoding)
            if lines and bytes_contain_identity_number(lines):
                return newlines, False, True, ""
            if final:
                break
    return newlines, last_byte == b"\n", False, first_line or ""


def _decide_encoding(path: Path, head: bytes) -> tuple[str, str, int, bool, str]:
    """Returns (python codec, COPY encoding, newlines, ends with newline, first line)."""
    if b"\x00" in head:
        raise Rejection("encoding", "binary content (NUL bytes): not a CSV text file")
    attempts = [("utf-8-sig", "UTF8")] if head.startswith(codecs.BOM_UTF8) else [("utf-8", "UTF8"), ("cp1252", "WIN1252")]
    for codec, copy_encoding in attempts:
        try:
            newlines, ends_nl, found, first_line = _scan(path, codec)
        except UnicodeDecodeError:
            continue
        if found:
            raise Rejection(
                "direct_identifier",
                "the file contains a personal identity number; nothing of it was stored",
            )
        return codec, copy_encoding, newlines, ends_nl, first_line
    raise Rejection("encoding", "neither UTF-8 nor Windows-1252")


def _sniff_delimiter(first_line: str) -> str:
    try:
        dialect = csv.Sniffer().sniff(first_line, delimiters=",;")
    except csv.Error:
        raise Rejection("dialect", "no comma- or semicolon-separated header row") from None
    return dialect.delimiter


def check_manifest(inspection: Inspection) -> None:
    manifest_path = inspection.path.with_name(inspection.path.name + ".manifest.json")
    if not manifest_path.exists():
        return
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        declared_rows = int(manifest["row_count"])
        declared_sha = str(manifest["sha256"]).lower()
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise Rejection("manifest", "the manifest sidecar is not valid JSON with row_count and sha256") from None
    delivery = inspection.delivery
    if delivery and (manifest.get("source") != delivery.source.name or manifest.get("period") != delivery.period):
        raise Rejection("manifest", "the manifest names another source or period than the file name")
    if declared_sha != inspection.sha256:
        raise Rejection("checksum", "sha256 differs from the manifest: corrupted or truncated delivery")
    if inspection.rows is not None and declared_rows != inspection.rows:
        raise Rejection(
            "truncated",
            f"{inspection.rows} data rows but the manifest declares {declared_rows}",
        )


def inspect(path: Path, known: tuple[int, str] | None = None) -> Inspection:
    """Everything that can be said about a file without loading it. Raises Rejection.
    `known`: the (size, sha256) the caller already computed."""
    size, sha = known or fingerprint(path)
    result = Inspection(path=path, file_name=safe_file_name(path.name), size=size, sha256=sha)
    result.delivery = parse_file_name(path.name)
    if result.delivery is None:
        raise Rejection("file_name", "name is not {source}_{YYYY-Www}_{YYYYMMDDTHHMM}.csv for a known source")
    if size == 0:
        raise Rejection("empty", "the file is empty")
    with open(path, "rb") as fh:
        head = fh.read(CHUNK)
    codec, copy_encoding, newlines, ends_nl, first_line = _decide_encoding(path, head)
    first_line = first_line.rstrip("\r")
    delimiter = _sniff_delimiter(first_line)
    is_ascii = first_line.isascii() and head.isascii()
    if delimiter == ";" and codec != "cp1252" and not is_ascii:
        raise Rejection("dialect", "UTF-8 exports are comma-separated; this one uses semicolons")
    if delimiter == "," and codec == "cp1252":
        raise Rejection("encoding", "Windows-1252 content in a comma-separated file (the contract's "
                        "Windows-1252 dialect is semicolon-separated)")
    if delimiter == ";" and is_ascii:
        copy_encoding = "WIN1252"  # plain ASCII reads the same either way
    header = [h.strip() for h in next(csv.reader([first_line], delimiter=delimiter))]
    result.encoding, result.delimiter, result.header = copy_encoding, delimiter, header
    result.ends_with_newline = ends_nl
    result.rows = max(newlines - 1, 0) + (0 if ends_nl else 1) if newlines else 0
    check_header(result)
    check_manifest(result)
    return result


def check_header(inspection: Inspection) -> None:
    source = inspection.delivery.source
    header = inspection.header
    identifying = [h for h in header if IDENTIFIER_COLUMN_RE.search(h) and h not in source.column_names]
    if identifying:
        raise Rejection("direct_identifier",
                        f"column(s) named like a direct identifier: {', '.join(sorted(identifying))[:200]}")
    if len(set(header)) != len(header):
        raise Rejection("dialect", "the header repeats a column name")
    expected = set(source.column_names)
    missing = sorted(expected - set(header))
    extra = sorted(set(header) - expected)
    if missing:
        detail = f"missing column(s): {', '.join(missing)}"
        if extra:
            detail += f"; unexpected column(s): {', '.join(extra)[:200]}"
        # A header that split into one field was almost certainly cut with the wrong delimiter.
        code = "dialect" if len(header) == 1 else "missing_columns"
        raise Rejection(code, detail)
    if extra:
        raise Rejection("unexpected_columns", f"column(s) outside the contract: {', '.join(extra)[:200]}")
