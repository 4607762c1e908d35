"""The compliance report as a PDF (ReportLab): a summary page with a green/red verdict per
clause, then one section per clause with its figures, tables and charts.

Chinese is set in ReportLab's built-in CID font STSong-Light (Adobe-GB1): the PDF names the
font and the reader supplies the glyphs, so nothing outside the Python environment is needed
to write it. Every text goes through a Paragraph with CJK word wrapping; all of it is escaped
(it comes from people and devices). Charts are drawn with reportlab.graphics.
"""

from __future__ import annotations

import io
import re
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.charts.barcharts import HorizontalBarChart
from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.shapes import Drawing, Line, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from compliance.report_layout import BarChart, Document, Figure, LineChart, Section, _Text
from compliance.report_layout import Table as DocTable

FONT = "STSong-Light"
LATIN = "Helvetica"
_WIDE = re.compile(r"[^\x00-\xff\u2013\u2014\u2018\u2019\u201c\u201d\u2022\u2026\u20ac]+")
GREEN = colors.HexColor("#1d9a46")
RED = colors.HexColor("#d3262c")
GREY = colors.HexColor("#8a8a8a")
PAGE_W, PAGE_H = A4
MARGIN = 14 * mm
WIDTH = PAGE_W - 2 * MARGIN


def _font() -> str:
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    return FONT


def _styles() -> dict[str, ParagraphStyle]:
    font = _font()
    del font  # registered here; set on each run of wide characters by _marked
    base = ParagraphStyle("base", fontName=LATIN, fontSize=9, leading=12, wordWrap="CJK")
    return {
        "base": base,
        "title": ParagraphStyle("title", parent=base, fontSize=18, leading=24, spaceAfter=6),
        "h2": ParagraphStyle("h2", parent=base, fontSize=13, leading=17, spaceBefore=8),
        "h3": ParagraphStyle("h3", parent=base, fontSize=10, leading=13, spaceBefore=6),
        "cell": ParagraphStyle("cell", parent=base, fontSize=7, leading=8.6),
        "head": ParagraphStyle(
            "head", parent=base, fontSize=7, leading=8.6, textColor=colors.black
        ),
        "note": ParagraphStyle("note", parent=base, fontSize=7.5, leading=9.5, textColor=GREY),
        "big": ParagraphStyle("big", parent=base, fontSize=11, leading=14),
    }


def _marked(text: str) -> str:
    """Escaped text in the style's Latin font, with every run of characters that font lacks
    (Chinese, full-width forms, ≤, arrows, ●) set in the CID font."""
    return _WIDE.sub(lambda m: f'<font name="{FONT}">{m.group(0)}</font>', escape(text))


def _p(text: str, style: ParagraphStyle) -> Paragraph:
    return Paragraph(_marked(text), style)


def _color(ok: bool | None) -> Any:
    return GREY if ok is None else GREEN if ok else RED


def _widths(rows: list[list[str]], columns: list[str]) -> list[float]:
    """Column widths in proportion to their longest text (CJK counted double), bounded."""
    weights = []
    for i, name in enumerate(columns):
        texts = [name] + [r[i] for r in rows[:60] if i < len(r)]
        longest = max(sum(2 if ord(ch) > 0x2E80 else 1 for ch in text) for text in texts)
        weights.append(min(max(longest, 7), 40))
    total = sum(weights)
    return [WIDTH * w / total for w in weights]


def _table(table: DocTable, s: dict[str, ParagraphStyle], t: _Text) -> list[Flowable]:
    if table.shown == 0:
        return []
    rows = table.rows[: table.shown]
    data: list[list[Any]] = [[_p(c, s["head"]) for c in table.columns]]
    data += [[_p(c, s["cell"]) for c in row] for row in rows]
    if not rows:
        data.append([_p(t("none"), s["cell"])] + [""] * (len(table.columns) - 1))
    grid = Table(data, colWidths=_widths(rows, table.columns), repeatRows=1)
    style = [
        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#c8c8c8")),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 2.5),
        ("RIGHTPADDING", (0, 0), (-1, -1), 2.5),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
    ]
    if not rows:
        style.append(("SPAN", (0, 1), (-1, 1)))
    grid.setStyle(TableStyle(style))
    out: list[Flowable] = [_p(table.title, s["h3"]), grid]
    more = len(table.rows) - len(rows)
    if more > 0:
        out.append(_p(t("more_rows", n=more, file=table.key + ".csv"), s["note"]))
    if table.note:
        out.append(_p(table.note, s["note"]))
    return out


def _chart_font(labels: list[str]) -> str:
    return FONT if any(_WIDE.search(label) for label in labels) else LATIN


def _line(chart: LineChart, s: dict[str, ParagraphStyle]) -> list[Flowable]:
    points = [(i, v) for i, (_l, v) in enumerate(chart.points) if v is not None]
    height = 60 * mm
    drawing = Drawing(WIDTH, height)
    if not points:
        drawing.add(String(WIDTH / 2, height / 2, "—", fontName=_font(), fontSize=10))
        return [_p(chart.title, s["h3"]), drawing]
    low = min([v for _i, v in points] + [chart.target])
    low = max(0.0, min(low, chart.target - 0.5) - 0.5)
    plot = LinePlot()
    plot.x, plot.y = 14 * mm, 12 * mm
    plot.width, plot.height = WIDTH - 20 * mm, height - 18 * mm
    plot.data = [points, [(0, chart.target), (max(len(chart.points) - 1, 1), chart.target)]]
    plot.lines[0].strokeColor = colors.HexColor("#1f5fbf")
    plot.lines[0].strokeWidth = 1.4
    plot.lines[1].strokeColor = GREEN
    plot.lines[1].strokeDashArray = [3, 2]
    plot.yValueAxis.valueMin = low
    plot.yValueAxis.valueMax = chart.target + (chart.target - low) * 0.05
    plot.yValueAxis.labels.fontName = LATIN
    plot.yValueAxis.labels.fontSize = 7
    plot.yValueAxis.labelTextFormat = "%.2f%%"
    plot.xValueAxis.valueMin = 0
    plot.xValueAxis.valueMax = max(len(chart.points) - 1, 1)
    every = max(1, len(chart.points) // 6)
    steps = list(range(0, len(chart.points), every))
    plot.xValueAxis.valueSteps = steps
    labels = [chart.points[i][0][:10] for i in steps]
    plot.xValueAxis.labelTextFormat = lambda v: (
        labels[steps.index(int(v))] if int(v) in steps else ""
    )
    plot.xValueAxis.labels.fontName = LATIN
    plot.xValueAxis.labels.fontSize = 7
    drawing.add(plot)
    return [_p(chart.title, s["h3"]), drawing]


def _bars(chart: BarChart, s: dict[str, ParagraphStyle]) -> list[Flowable]:
    if not chart.bars:
        return []
    row_h = 7 * mm
    height = row_h * len(chart.bars) + 14 * mm
    drawing = Drawing(WIDTH, height)
    bars = HorizontalBarChart()
    bars.x, bars.y = 60 * mm, 8 * mm
    bars.width, bars.height = WIDTH - 85 * mm, row_h * len(chart.bars)
    values = [v if v is not None else 0.0 for _l, v in chart.bars]
    low = max(0.0, min([*values, chart.target]) - 1)
    bars.data = [values]
    bars.valueAxis.valueMin = low
    bars.valueAxis.valueMax = chart.target
    bars.valueAxis.labels.fontName = LATIN
    bars.valueAxis.labels.fontSize = 7
    bars.valueAxis.labelTextFormat = "%.1f%%"
    names = [label if len(label) <= 34 else label[:33] + "…" for label, _v in chart.bars]
    bars.categoryAxis.categoryNames = names
    bars.categoryAxis.labels.fontName = _chart_font(names)
    bars.categoryAxis.labels.fontSize = 7
    bars.barLabelFormat = "%.4f%%"
    bars.barLabels.fontName = LATIN
    bars.barLabels.fontSize = 6.5
    bars.barLabels.nudge = 14
    for i, value in enumerate(values):
        bars.bars[(0, i)].fillColor = GREEN if value >= chart.target else RED
    drawing.add(bars)
    x = bars.x + bars.width
    drawing.add(Line(x, bars.y, x, bars.y + bars.height, strokeColor=GREEN, strokeDashArray=[3, 2]))
    return [_p(chart.title, s["h3"]), drawing]


def _figures(figures: list[Figure], s: dict[str, ParagraphStyle]) -> list[Flowable]:
    if not figures:
        return []
    cells = []
    for f in figures:
        value = ParagraphStyle(
            "v", parent=s["big"], textColor=_color(f.ok) if f.ok is not None else colors.black
        )
        cells.append([_p(f.label, s["cell"]), _p(f.value, value)])
    per_row = 4
    data: list[list[Any]] = []
    for i in range(0, len(cells), per_row):
        chunk = cells[i : i + per_row]
        chunk += [["", ""]] * (per_row - len(chunk))
        data.append([c[0] for c in chunk])
        data.append([c[1] for c in chunk])
    grid = Table(data, colWidths=[WIDTH / per_row] * per_row)
    grid.setStyle(
        TableStyle(
            [
                ("BOX", (0, 0), (-1, -1), 0.4, colors.HexColor("#dddddd")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 1),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
            ]
        )
    )
    return [Spacer(1, 2 * mm), grid, Spacer(1, 2 * mm)]


def _section(section: Section, s: dict[str, ParagraphStyle], t: _Text) -> list[Flowable]:
    color = _color(section.ok).hexval()[2:]
    head = Paragraph(
        f'<font color="#{color}" name="{FONT}">●</font> {_marked(section.title)} — '
        f'<font color="#{color}">{_marked(t.verdict(section.ok))}</font>',
        s["h2"],
    )
    out: list[Flowable] = [
        KeepTogether([head, _p(t("green_means") + section.rule, s["note"])]),
        *_figures(section.figures, s),
    ]
    for block in section.blocks:
        if isinstance(block, DocTable):
            out.extend(_table(block, s, t))
        elif isinstance(block, LineChart):
            out.extend(_line(block, s))
        elif isinstance(block, BarChart):
            out.extend(_bars(block, s))
        elif isinstance(block, Figure):
            out.extend(_figures([block], s))
        else:
            out.append(_p(block, s["base"]))
    return out


def render_pdf(document: Document) -> bytes:
    s = _styles()
    t = _Text(document.lang)
    buffer = io.BytesIO()
    footer = f"{document.title} | {document.meta[1][1] if len(document.meta) > 1 else ''}"

    def page(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(_font(), 7)
        canvas.setFillColor(GREY)
        canvas.drawString(MARGIN, 8 * mm, footer)
        canvas.drawRightString(PAGE_W - MARGIN, 8 * mm, str(doc.page))
        canvas.restoreState()

    pdf = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=14 * mm,
        title=document.title,
        author="ParkGuard",
        subject=footer,
        invariant=1,
    )
    story: list[Flowable] = [_p(document.title, s["title"])]
    meta = Table(
        [[_p(k, s["cell"]), _p(v, s["base"])] for k, v in document.meta],
        colWidths=[35 * mm, WIDTH - 35 * mm],
    )
    meta.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
    story += [meta, Spacer(1, 4 * mm), _p(t("summary"), s["h2"])]
    rows: list[list[Any]] = [
        [_p(t("clause"), s["head"]), _p(t("verdict"), s["head"]), _p(t("figures"), s["head"])]
    ]
    style = [
        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#c8c8c8")),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
    ]
    for i, section in enumerate(document.sections, start=1):
        verdict = ParagraphStyle("verdict", parent=s["big"], textColor=colors.white, alignment=1)
        rows.append(
            [
                _p(section.title, s["base"]),
                _p(t.verdict(section.ok), verdict),
                _p("; ".join(f"{f.label}: {f.value}" for f in section.figures), s["cell"]),
            ]
        )
        style.append(("BACKGROUND", (1, i), (1, i), _color(section.ok)))
    summary = Table(rows, colWidths=[50 * mm, 22 * mm, WIDTH - 72 * mm], repeatRows=1)
    summary.setStyle(TableStyle(style))
    story += [summary, Spacer(1, 4 * mm)]
    story += [_p(n, s["note"]) for n in document.notes]
    story.append(PageBreak())
    for section in document.sections:
        story.extend(_section(section, s, t))
    pdf.build(story, onFirstPage=page, onLaterPages=page)
    return buffer.getvalue()
