"""The compliance report as a zip of CSV files: ``summary.csv``, ``meta.csv`` and one file per
table of the document, with every row (the HTML and PDF may show only the first ones).

Files are UTF-8 with a byte-order mark so that spreadsheet programs read Chinese correctly.
A cell that a spreadsheet would take for a formula (starting with = + - @, a tab or a carriage
return) is prefixed with a quote (OWASP's advice on CSV injection); plain negative numbers are
left as they are.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile

from compliance.report_layout import Document, Table

_NUMBER = re.compile(r"^-?\d+(\.\d+)?( %)?$")
FIXED_TIME = (2026, 1, 1, 0, 0, 0)
"""Every member's timestamp in the zip, so the same report gives the same bytes."""


def safe_cell(value: str) -> str:
    if value and value[0] in "=+-@\t\r" and not _NUMBER.match(value):
        return "'" + value
    return value


def _csv(table: Table) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([safe_cell(c) for c in table.columns])
    for row in table.rows:
        writer.writerow([safe_cell(c) for c in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def render_csv(document: Document) -> bytes:
    tables = [
        Table("meta", "meta", ["key", "value"], [[k, v] for k, v in document.meta]),
        document.summary_table(),
        *document.tables(),
    ]
    seen: set[str] = set()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for table in tables:
            name = table.key
            n = 2
            while name in seen:
                name = f"{table.key}_{n}"
                n += 1
            seen.add(name)
            info = zipfile.ZipInfo(f"{name}.csv", date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, _csv(table))
    return buffer.getvalue()
