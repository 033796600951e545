"""Reading local files of text: JSON lines, CSV/TSV with a header row, plain
text (each optionally gzipped), into rows, and rows into texts and labels.
Every repair and drop is counted in ``notes``. Which file a data spec
names, and how its rows become splits, is ``data.py``'s.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path

import numpy as np

from minitransfer.errors import DataError

SPLITS = ("train", "validation", "test")
KINDS = ("jsonl", "csv", "tsv", "txt")


# ----------------------------------------------------------------------------
# Reading local files
# ----------------------------------------------------------------------------


def read_text(path: Path, notes: list[str]) -> str:
    """File contents as str; invalid UTF-8 is replaced by U+FFFD and counted."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(raw) >= 4 and b"\x00\x00" in (raw[0:4:2], raw[1:4:2])):
        raise DataError(
            f"{path}: looks like UTF-16 text (a UTF-16 byte-order mark, or NUL bytes among its first "
            f"characters; or another binary encoding); minitransfer reads UTF-8: save the file as UTF-8"
        )
    try:
        return raw.decode("utf-8-sig")  # -sig: a leading byte-order mark is not part of the first field's name
    except UnicodeDecodeError:
        text = raw.decode("utf-8-sig", errors="replace")
        bad = text.count("\ufffd") - raw.count("\ufffd".encode())
        notes.append(f"{path.name}: {bad} invalid UTF-8 byte sequence(s) replaced by U+FFFD")
        return text


def kind_of(path: Path) -> str | None:
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    ext = name.rsplit(".", 1)[-1] if "." in name else ""
    return ext if ext in KINDS else None


class Rows(list):
    """A file's rows (dicts), with the line each starts on (``lines``), so
    that a bad row is named by its line, as an editor shows it."""

    def __init__(self, rows=(), lines=None, delimited: bool = False):
        super().__init__(rows)
        self.lines = list(lines) if lines is not None else None
        self.delimited = delimited  # csv/tsv: a value missing from a short row reads as None

    def where(self, i: int) -> str:
        """'line 7' (or, where lines are unknown, 'row 3'), for row ``i`` (0-based)."""
        return f"line {self.lines[i]}" if self.lines is not None else f"row {i + 1}"


def read_rows(path: Path, kind: str, notes: list[str]) -> Rows:
    """Rows of a jsonl/csv/tsv file as dicts (txt: paragraphs as {'text': ...})."""
    text = read_text(path, notes)
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    if kind == "jsonl":
        rows, lines = [], []
        # split on "\n" only: str.splitlines() would also break inside strings at
        # U+2028, U+0085 and friends, which real text (IMDB) contains
        for i, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}, line {i}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}, line {i}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
            lines.append(i)
        return Rows(rows, lines)
    if kind in ("csv", "tsv"):
        return read_delimited(text, path, kind)
    if kind == "txt":
        return Rows({"text": p.strip()} for p in re.split(r"\n\s*\n", text) if p.strip())
    raise DataError(f"unknown file kind {kind!r}; expected one of {KINDS}")


def read_delimited(text: str, path: Path, kind: str) -> Rows:
    """Rows of a CSV or TSV file with a header, as dicts.

    CSV is read strictly: a stray or unterminated quote is an error naming
    the line, not rows silently run together. TSV files rarely quote, and
    their texts often hold quote marks, so TSV quoting is read leniently, as
    before. Either way a row with more non-empty values than the header has
    columns is an error: with an unquoted comma, its "label" would be a piece
    of its text. (A trailing delimiter, an empty extra value, is allowed; a
    short row keeps None for what it lacks, which the caller reports.)"""
    delimiter, shown = (",", "a comma") if kind == "csv" else ("\t", "a tab")
    # the csv module refuses a field over 128 KiB by default; a long review is not malformed (the JSONL reader
    # takes it), and max_len cuts it later, counted
    csv.field_size_limit(2**31 - 1)
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter, strict=kind == "csv")
    # split as the csv reader counts lines, on "\n" alone (str.splitlines() also breaks at form feeds, U+2028...)
    lines = text.split("\n")

    def row_start(after: int) -> int:  # the first non-empty line after line `after` (DictReader skips empty ones)
        n = after + 1
        while n <= len(lines) and lines[n - 1] in ("", "\r"):
            n += 1
        return n

    rows, row_lines, start = [], [], 1
    try:
        fields = reader.fieldnames or []  # reads the header
        repeated = sorted({f for f in fields if fields.count(f) > 1})
        if repeated:  # DictReader would keep the last column of each name and drop the others, silently
            raise DataError(
                f"{path}, line 1: the header names {', '.join(repr(f) for f in repeated)} more than "
                f"once ({', '.join(fields)}); each column needs its own name"
            )
        while True:
            start = row_start(reader.line_num)
            try:
                row = next(reader)
            except StopIteration:
                break
            if any(v is None for v in row.values()) and any("\n" in v for v in row.values() if v):
                # a short row whose field spans lines: a quote opened and never closed swallowed what followed
                raise DataError(
                    f"{path}, line {start}: a quoted field runs from here to line {reader.line_num}, "
                    f"and the row ends short of values ({len(fields)} columns: {', '.join(fields)}); "
                    f"if a quote is never closed, close it, or double a quote mark that is part of "
                    f"the text"
                )
            extra = [v for v in row.pop(None, []) if v.strip()]
            if extra:
                raise DataError(
                    f"{path}, line {start}: {len(fields) + len(extra)} values, the header has "
                    f"{len(fields)} columns ({', '.join(fields)}); a field that holds {shown} must "
                    f"be in double quotes"
                )
            rows.append(row)
            row_lines.append(start)
    except csv.Error as e:
        raise DataError(
            f"{path}, the row from line {start}: not valid {kind.upper()} ({e}); a field that holds "
            f"{shown}, a quote or a line break must be in double quotes, its own quotes doubled"
        ) from None
    if not rows:
        raise DataError(f"{path}: a header row but no data rows")
    return Rows(rows, row_lines, delimited=True)


def texts_and_raw_labels(rows, path, text_field, label_field, notes, need_labels=True):
    """Pull the two fields out of every row. Rows with empty text are dropped
    and counted; a missing field is an error that lists the fields present."""
    first = rows[0]
    missing = [f for f in ([text_field, label_field] if need_labels else [text_field]) if f not in first]
    if missing:
        qa = {"question", "context"} <= set(first)
        # one field whose name holds another delimiter: a tab- or semicolon-separated file read as CSV
        other = next((d for d in ("\t", ";", ",") if len(first) == 1 and d in next(iter(first))), None)
        shown = {"\t": "tabs", ";": "semicolons", ",": "commas"}.get(other)
        hint = (
            "They look like question answering data (question, context): `minitransfer finetune --task qa` reads them."
            if qa
            else f"The header row holds {shown}: the file is not separated the way its spec reads it"
            + (
                " (tab-separated: give it as tsv:PATH)."
                if other == "\t"
                else " (minitransfer reads commas with csv: and tabs with tsv:)."
                if other == ";"
                else " (comma-separated: give it as csv:PATH)."
            )
            if other
            else "Choose with `text_field`/`label_field` (the first row is read as the header: the field names)."
        )
        raise DataError(f"{path}: no field {missing[0]!r}; the rows have fields {sorted(first)}. " + hint)
    texts, labels, empty = [], [], 0
    where = rows.where if isinstance(rows, Rows) else (lambda i: f"row {i + 1}")
    for i, row in enumerate(rows):
        if text_field not in row or (need_labels and label_field not in row):
            f = text_field if text_field not in row else label_field
            raise DataError(f"{path}, {where(i)}: no field {f!r} (fields: {sorted(row)})")
        t = row[text_field]
        if t is not None and not isinstance(t, str):  # a number or a list as "text" is a wrong field, not text
            raise DataError(
                f"{path}, {where(i)}: the {text_field!r} is {str(t)[:40]!r} ({type(t).__name__}), "
                f"not text; choose the text field with `text_field`"
            )
        if t is None or not t.strip():
            empty += 1
            continue
        if need_labels:
            lab = row[label_field]
            if lab is None or (isinstance(lab, str) and not lab.strip()):
                short = lab is None and getattr(rows, "delimited", False)
                raise DataError(
                    f"{path}, {where(i)}: the {label_field!r} is "
                    + (
                        "empty (the row has fewer values than the header has columns)"
                        if short
                        else "null"
                        if lab is None
                        else "empty"
                    )
                )
            if (
                not isinstance(lab, (str, int, float))
                or isinstance(lab, bool)
                or (isinstance(lab, float) and not lab.is_integer())
            ):
                raise DataError(
                    f"{path}, {where(i)}: the {label_field!r} is {lab!r}; a label is a name (a string) "
                    f"or a whole number"
                )
            labels.append(lab)
        texts.append(str(t))
    if empty:
        notes.append(f"{path.name}: {empty} row(s) with empty {text_field!r} dropped")
    if not texts:
        raise DataError(f"{path}: every row has an empty {text_field!r}")
    return texts, labels


def label_vocabulary(raw_labels: list, decimals: bool = False) -> list[str]:
    """Label names in a fixed order: numerically if every label is an integer
    (0, 1, 2 ...), else alphabetically (``canonical_label`` says how a label
    is read)."""
    names = {canonical_label(x, decimals) for x in raw_labels}
    if all(INTEGER.fullmatch(n) for n in names):
        return [str(v) for v in sorted(int(n) for n in names)]
    return sorted(names)


INTEGER = re.compile(r"-?\d+")
# a label written as a whole number, however spelt: 1, 01, +1, 1.0 (a CSV cell of a column that a spreadsheet
# wrote as floats) are all the class 1, as a JSON 1 or 1.0 is; beside labels with real decimals (ratings
# 1.0, 1.5, 2.0), "1.0" keeps its spelling
WHOLE_NUMBER = re.compile(r"[-+]?\d+(\.0*)?")
DECIMAL = re.compile(r"[-+]?\d*\.\d*[1-9]\d*")


def has_decimals(raw_labels: list) -> bool:
    return any(isinstance(x, str) and DECIMAL.fullmatch(x.strip()) for x in raw_labels)


def canonical_label(x, decimals: bool = False) -> str:
    """How a raw label names its class: whole numbers as such (``WHOLE_NUMBER``;
    with ``decimals``, only those written without a decimal point), anything
    else as its stripped text."""
    if isinstance(x, (float, np.floating)) and float(x).is_integer():
        x = int(x)
    s = str(x).strip()
    whole = INTEGER.fullmatch(s.lstrip("+")) if decimals else WHOLE_NUMBER.fullmatch(s)
    return str(int(s.split(".")[0])) if whole else s


def respelt_labels(raw_labels: list, decimals: bool = False) -> dict[str, str]:
    """Labels written as text whose whole-number reading differs from their
    spelling ({"01": "1", "1.0": "1"}), for a note: merged, but said."""
    return {
        s: canonical_label(s, decimals)
        for s in {x.strip() for x in raw_labels if isinstance(x, str)}
        if canonical_label(s, decimals) != s
    }
