"""Reading a delivered file as the contract, before any of its content reaches the warehouse.

One streaming pass decides the encoding, counts rows and scans every byte for personal identity
numbers; the file is never held in memory whole, and no line may exceed MAX_LINE_BYTES nor a field
MAX_FIELD_BYTES. Reject reasons say what is wrong in counts, positions and the contract's own
column names: nothing of the file (no cell, no header name) is ever echoed.
"""

from __future__ import annotations

import codecs
import csv
import errno
import hashlib
import json
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ewi.ingest.identifiers import (
    bytes_contain_identity_number,
    contains_identity_number,
    redact_identity_numbers,
)
from ewi.sources import IDENTIFIER_COLUMN_RE, Delivery, parse_file_name

CHUNK = 1 << 20
#: The contract's longest line is about 200 bytes (a 64-hex pseudonym and seven short values); the
#: bounds leave room for any honest export while keeping a one-line file of gigabytes from being
#: held or parsed (decisions.md).
MAX_LINE_BYTES = 64 * 1024
MAX_FIELD_BYTES = 1024
#: A manifest is four short values.
MAX_MANIFEST_BYTES = 64 * 1024
_FIELD_SEPARATORS = re.compile(rb"[,;]")


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
class DeliveredFile:
    """A delivered file on its way through the gate. Its name is parsed once, when it arrives
    (`arrived`); reading it adds its fingerprint and dialect, and the same object then flows on to
    the write, the audit and the decision."""
    path: Path
    file_name: str  # as it may be recorded (safe_file_name)
    delivery: Delivery | None  # None: the name is not the contract's
    size: int | None = None
    sha256: str | None = None
    encoding: str | None = None  # postgres COPY encoding name: UTF8 or WIN1252
    delimiter: str | None = None
    header: list[str] = field(default_factory=list)
    rows: int | None = None
    ends_with_newline: bool = True


def arrived(path: Path | str) -> DeliveredFile:
    """A file as it arrives: its name recorded safely and parsed, nothing of it read yet."""
    path = Path(path)
    return DeliveredFile(path=path, file_name=safe_file_name(path.name), delivery=parse_file_name(path.name))


#: What a path that is not a regular file is, as a reason names it (never its target or content).
_NOT_REGULAR = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def refuse_unless_regular(mode: int) -> None:
    """A delivery is a regular file. A symbolic link could lead anywhere (another file, /dev/zero),
    a named pipe or a device may never end: they are refused on their lstat, never opened. Only the
    last part of the path counts: the folders above it may be links (a landing folder on a mount)."""
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _NOT_REGULAR if test(mode)), "of an unknown kind")
        raise Rejection("not_a_regular_file", f"the path is {kind}, not a regular file; nothing of it was read")


def open_regular(path: Path):
    """Open a delivered file for reading, refusing anything but a regular file: checked on its lstat
    before opening, then on the opened file itself, in case the path was swapped in between."""
    refuse_unless_regular(os.lstat(path).st_mode)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a symbolic link after the lstat
            refuse_unless_regular(stat.S_IFLNK)
        raise
    fh = open(fd, "rb")  # noqa: SIM115 - returned to the caller's with-block
    try:
        refuse_unless_regular(os.fstat(fd).st_mode)
    except Rejection:
        fh.close()
        raise
    return fh


def fingerprint(file: DeliveredFile) -> DeliveredFile:
    """The file's size and sha256, read in blocks. Raises Rejection for anything but a regular file
    (then neither is set)."""
    digest = hashlib.sha256()
    size = 0
    with open_regular(file.path) as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    file.size, file.sha256 = size, digest.hexdigest()
    return file


def safe_file_name(name: str) -> str:
    """The file name as it may be recorded: a name that itself carries an identity number is
    recorded redacted, in whatever form the number is written."""
    return redact_identity_numbers(name)[:255]


def _scan(path: Path, encoding: str) -> tuple[int, bool, bool, str]:
    """Decode the whole file strictly and scan it for identity numbers, a block of whole lines at a
    time (so no number is split between blocks). Returns (newline count, ends with newline, found
    an identity number, first line)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    newlines = 0
    carry = b""
    first_line = None
    last_byte = b""
    with open_regular(path) as fh:
        while True:
            chunk = fh.read(CHUNK)
            final = not chunk
            decoder.decode(chunk, final=final)
            lines_before = newlines  # the carried line has no newline: every one counted ends a line
            if chunk:
                last_byte = chunk[-1:]
                newlines += chunk.count(b"\n")
            block = carry + chunk
            cut = len(block) if final else block.rfind(b"\n") + 1
            lines, carry = block[:cut], block[cut:]
            if lines and bytes_contain_identity_number(lines, encoding):
                return newlines, False, True, ""
            _check_sizes(lines, lines_before, carry)
            if first_line is None and (b"\n" in lines or final):
                first_line = lines.split(b"\n", 1)[0].decode(encoding)
            if final:
                break
    return newlines, last_byte == b"\n", False, first_line or ""


def _check_sizes(lines: bytes, lines_before: int, unfinished: bytes) -> None:
    """Raise if a line of `lines` (whole lines, following `lines_before` others) or the `unfinished`
    line after them is longer than the bounds. Only a line longer than a field may hold one that is
    too long, so legitimate files pay one split per block. A field is counted between commas and
    semicolons, whichever the delimiter turns out to be (a quoted field holding either is counted in
    pieces; its line's bound still holds)."""
    if len(unfinished) > MAX_LINE_BYTES:
        number = lines_before + lines.count(b"\n") + 1
        raise Rejection("line_too_long", f"line {number} is longer than {MAX_LINE_BYTES} bytes "
                        "(the contract's lines are about 200)")
    if len(lines) <= MAX_FIELD_BYTES:
        return
    split = lines.split(b"\n")
    if max(map(len, split)) <= MAX_FIELD_BYTES:
        return
    for number, line in enumerate(split, start=lines_before + 1):
        if len(line) > MAX_LINE_BYTES:
            raise Rejection("line_too_long", f"line {number} is longer than {MAX_LINE_BYTES} bytes "
                            "(the contract's lines are about 200)")
        if len(line) > MAX_FIELD_BYTES and max(map(len, _FIELD_SEPARATORS.split(line))) > MAX_FIELD_BYTES:
            raise Rejection("field_too_long", f"a field on line {number} is longer than {MAX_FIELD_BYTES} bytes")


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
    """Comma or semicolon, decided on the header's first KiB: the contract's header is under 200
    bytes, and csv.Sniffer's quote rule takes time quadratic in its input (30 s on a crafted 64 KiB
    line of quotes and semicolons)."""
    try:
        dialect = csv.Sniffer().sniff(first_line[:MAX_FIELD_BYTES], delimiters=",;")
    except csv.Error:
        raise Rejection("dialect", "no comma- or semicolon-separated header row") from None
    return dialect.delimiter


def check_manifest(file: DeliveredFile) -> None:
    manifest_path = file.path.with_name(file.path.name + ".manifest.json")
    if not os.path.lexists(manifest_path):
        return
    try:
        with open_regular(manifest_path) as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
    except Rejection:
        raise Rejection("manifest", "the manifest sidecar is not a regular file; it was not read") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise Rejection("manifest", f"the manifest sidecar is larger than {MAX_MANIFEST_BYTES} bytes")
    # Anywhere in it, escaped in JSON or not: refused before any of its values can reach a reason.
    try:
        decoded = json.dumps(json.loads(raw.decode("utf-8", errors="replace")), ensure_ascii=False)
    except (ValueError, RecursionError):
        decoded = ""
    if bytes_contain_identity_number(raw) or contains_identity_number(decoded):
        raise Rejection("direct_identifier", "the manifest sidecar contains a personal identity number")
    try:
        manifest = json.loads(raw.decode("utf-8"))
        declared_rows = int(manifest["row_count"])
        declared_sha = str(manifest["sha256"]).lower()
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise Rejection("manifest", "the manifest sidecar is not valid JSON with row_count and sha256") from None
    delivery = file.delivery
    if delivery and (manifest.get("source") != delivery.source.name or manifest.get("period") != delivery.period):
        raise Rejection("manifest", "the manifest names another source or period than the file name")
    if declared_sha != file.sha256:
        raise Rejection("checksum", "sha256 differs from the manifest: corrupted or truncated delivery")
    if file.rows is not None and declared_rows != file.rows:
        raise Rejection(
            "truncated",
            f"{file.rows} data rows but the manifest declares {declared_rows}",
        )


def inspect(path: Path | str) -> DeliveredFile:
    """Everything that can be said about a file at `path` without loading it. Raises Rejection."""
    return read(fingerprint(arrived(path)))


def read(file: DeliveredFile) -> DeliveredFile:
    """Read a fingerprinted file as the contract: its encoding, dialect, header, row count and
    manifest, all without loading it. Raises Rejection."""
    if file.delivery is None:
        raise Rejection("file_name", "name is not {source}_{YYYY-Www}_{YYYYMMDDTHHMM}.csv for a known source")
    if file.size == 0:
        raise Rejection("empty", "the file is empty")
    with open_regular(file.path) as fh:
        head = fh.read(CHUNK)
    codec, copy_encoding, newlines, ends_nl, first_line = _decide_encoding(file.path, head)
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
    try:
        header = [h.strip() for h in next(csv.reader([first_line], delimiter=delimiter))]
    except csv.Error:  # e.g. a carriage return inside the line; the message is not passed on
        raise Rejection("dialect", "the header row is not a CSV row") from None
    file.encoding, file.delimiter, file.header = copy_encoding, delimiter, header
    file.ends_with_newline = ends_nl
    file.rows = max(newlines - 1, 0) + (0 if ends_nl else 1) if newlines else 0
    check_header(file)
    check_manifest(file)
    return file


def _positions(header: list[str], wanted) -> str:
    """1-based positions of the header fields for which `wanted` holds, as a reason may name them
    (the first 20: a header line may hold thousands of fields)."""
    positions = [str(i) for i, h in enumerate(header, start=1) if wanted(h)]
    return ", ".join(positions[:20]) + (", …" if len(positions) > 20 else "")


def check_header(file: DeliveredFile) -> None:
    """The header against the contract. A reason names the contract's columns that are missing and
    counts and places the file's own: a header field may be anything, a pseudonym or a name when
    the header row is missing, so it is never quoted."""
    source = file.delivery.source
    header = file.header
    expected = set(source.column_names)
    identifying = [h for h in header if IDENTIFIER_COLUMN_RE.search(h) and h not in expected]
    if identifying:
        identifying_names = set(identifying)
        raise Rejection("direct_identifier", f"{len(identifying)} column(s) named like a direct identifier, "
                        f"at position(s) {_positions(header, lambda h: h in identifying_names)}")
    if len(set(header)) != len(header):
        repeated = {h for h, n in Counter(header).items() if n > 1}  # a header may have thousands of fields
        raise Rejection("dialect", "the header repeats a column name, at positions "
                        f"{_positions(header, lambda h: h in repeated)}")
    missing = sorted(expected - set(header))
    extra = sorted(set(header) - expected)
    where = f"{len(extra)} of {len(header)} header field(s) outside the contract, at position(s) " \
            f"{_positions(header, lambda h: h not in expected)}"
    if missing:
        detail = f"missing column(s): {', '.join(missing)}"
        if len(missing) == len(expected):
            detail = f"none of the contract's {len(expected)} columns in the first line (no header row?)"
        if extra:
            detail += f"; {where}"
        # A header that split into one field was almost certainly cut with the wrong delimiter.
        code = "dialect" if len(header) == 1 else "missing_columns"
        raise Rejection(code, detail)
    if extra:
        raise Rejection("unexpected_columns", where)
