"""The compliance report as one self-contained HTML page (styles inline, charts as inline SVG),
served by the API and shown in the console. Every text is escaped: labels, notes and names
come from people and devices."""

from __future__ import annotations

from html import escape

from compliance.report_layout import (
    BarChart,
    Document,
    Figure,
    LineChart,
    Section,
    Table,
    _Text,
)

STYLE = """
body{font-family:"Noto Sans CJK SC","Microsoft YaHei","PingFang SC",Helvetica,Arial,sans-serif;
margin:2em auto;max-width:1100px;color:#1c1c1c;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ccc;padding-bottom:.2em;
margin-top:2em}h3{font-size:1.05em;margin:1.4em 0 .4em}
table{border-collapse:collapse;width:100%;font-size:.86em;margin:.3em 0 1em}
th,td{border:1px solid #d0d0d0;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#11702f;font-weight:bold}.bad{color:#b3161b;font-weight:bold}.na{color:#777}
.dot{display:inline-block;width:.8em;height:.8em;border-radius:50%;margin-right:.4em;
vertical-align:middle}.dot.ok{background:#1d9a46}.dot.bad{background:#d3262c}
.dot.na{background:#aaa}.meta td{border:none;padding:1px 8px 1px 0}.rule{color:#555;
font-size:.9em}.figs{display:flex;flex-wrap:wrap;gap:.5em;margin:.5em 0}
.fig{border:1px solid #ddd;border-radius:4px;padding:.3em .7em;min-width:8em}
.fig b{display:block;font-size:1.15em}.note{color:#555;font-size:.85em}
"""


def _cls(ok: bool | None) -> str:
    return "na" if ok is None else "ok" if ok else "bad"


def _num(text: str) -> bool:
    cleaned = text.replace(" %", "").replace(".", "", 1).replace("/", "", 1).replace("-", "", 1)
    return cleaned.isdigit()


def _table(table: Table, t: _Text, limit: bool = True) -> str:
    shown = table.rows if not limit else table.rows[: max(table.shown, 0)]
    if limit and table.shown == 0:
        return ""
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{escape(c)}</td>' if _num(c) else f"<td>{escape(c)}</td>" for c in row
        )
        + "</tr>"
        for row in shown
    )
    if not table.rows:
        body = f'<tr><td colspan="{len(table.columns)}" class="na">{escape(t("none"))}</td></tr>'
    parts = [f"<h3>{escape(table.title)}</h3>", f"<table><tr>{head}</tr>{body}</table>"]
    more = len(table.rows) - len(shown)
    if more > 0:
        parts.append(
            f'<p class="note">{escape(t("more_rows", n=more, file=table.key + ".csv"))}</p>'
        )
    if table.note:
        parts.append(f'<p class="note">{escape(table.note)}</p>')
    return "".join(parts)


def _line(chart: LineChart) -> str:
    width, height, left, bottom = 900, 220, 50, 30
    values = [v for _l, v in chart.points if v is not None]
    floor = min([*values, chart.target]) if values else chart.target - 1
    low = max(0.0, min(floor, chart.target - 0.5) - 0.5)
    span = max(chart.target - low, 0.5)
    n = max(len(chart.points) - 1, 1)

    def x(i: int) -> float:
        return left + (width - left - 10) * i / n

    def y(v: float) -> float:
        return 10 + (height - bottom - 10) * (1 - (v - low) / span)

    path = " ".join(
        f"{'M' if i == 0 or chart.points[i - 1][1] is None else 'L'}{x(i):.1f},{y(v):.1f}"
        for i, (_l, v) in enumerate(chart.points)
        if v is not None
    )
    ticks = "".join(
        f'<text x="{x(i):.1f}" y="{height - 8}" font-size="10" text-anchor="middle">'
        f"{escape(label[:10])}</text>"
        for i, (label, _v) in enumerate(chart.points)
        if i % max(1, len(chart.points) // 6) == 0
    )
    grid = "".join(
        f'<line x1="{left}" x2="{width - 10}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
        f'<text x="{left - 4}" y="{y(v) + 3:.1f}" font-size="10" text-anchor="end">{v:g}%</text>'
        for v in (low, (low + chart.target) / 2, chart.target)
    )
    return (
        f"<h3>{escape(chart.title)}</h3>"
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(chart.title)}">{grid}'
        f'<line x1="{left}" x2="{width - 10}" y1="{y(chart.target):.1f}" '
        f'y2="{y(chart.target):.1f}" stroke="#1d9a46" stroke-dasharray="4 3"/>'
        f'<path d="{path}" fill="none" stroke="#1f5fbf" stroke-width="1.6"/>{ticks}</svg>'
    )


def _bars(chart: BarChart) -> str:
    rows = []
    for label, value in chart.bars:
        share = 0.0 if value is None else max(0.0, min(value, 100.0))
        color = "#1d9a46" if value is not None and value >= chart.target else "#d3262c"
        rows.append(
            f"<tr><td>{escape(label)}</td><td style='width:60%'>"
            f"<div style='background:{color};height:.9em;width:{share:.2f}%'></div></td>"
            f'<td class="n">{"—" if value is None else f"{value:.4f} %"}</td></tr>'
        )
    return f"<h3>{escape(chart.title)}</h3><table>{''.join(rows)}</table>"


def _figures(figures: list[Figure]) -> str:
    return (
        '<div class="figs">'
        + "".join(
            f'<div class="fig"><span>{escape(f.label)}</span>'
            f'<b class="{_cls(f.ok)}">{escape(f.value)}</b></div>'
            for f in figures
        )
        + "</div>"
    )


def _section(section: Section, t: _Text) -> str:
    parts = [
        f'<section id="s-{escape(section.key)}"><h2><span class="dot {_cls(section.ok)}">'
        f"</span>{escape(section.title)} — "
        f'<span class="{_cls(section.ok)}">{escape(t.verdict(section.ok))}</span></h2>',
        f'<p class="rule">{escape(t("green_means"))}{escape(section.rule)}</p>',
        _figures(section.figures),
    ]
    for block in section.blocks:
        if isinstance(block, Table):
            parts.append(_table(block, t))
        elif isinstance(block, LineChart):
            parts.append(_line(block))
        elif isinstance(block, BarChart):
            parts.append(_bars(block))
        elif isinstance(block, Figure):
            parts.append(_figures([block]))
        else:
            parts.append(f"<p>{escape(block)}</p>")
    parts.append("</section>")
    return "".join(parts)


def render_html(document: Document) -> bytes:
    t = _Text(document.lang)
    meta = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in document.meta)
    summary = "".join(
        f'<tr><td><a href="#s-{escape(s.key)}">{escape(s.title)}</a></td>'
        f'<td class="{_cls(s.ok)}"><span class="dot {_cls(s.ok)}"></span>'
        f"{escape(t.verdict(s.ok))}</td>"
        f"<td>{escape('; '.join(f'{f.label}: {f.value}' for f in s.figures))}</td></tr>"
        for s in document.sections
    )
    page = (
        f'<!doctype html><html lang="{"zh-CN" if document.lang == "zh" else "en"}"><head>'
        f'<meta charset="utf-8"><title>{escape(document.title)}</title>'
        f"<style>{STYLE}</style></head><body>"
        f"<h1>{escape(document.title)}</h1><table class='meta'>{meta}</table>"
        f"<h2>{escape(t('summary'))}</h2><table><tr><th>{escape(t('clause'))}</th>"
        f"<th>{escape(t('verdict'))}</th><th>{escape(t('figures'))}</th></tr>{summary}</table>"
        + "".join(_section(s, t) for s in document.sections)
        + f"<h2>{escape(t('definitions'))}</h2>"
        + "".join(f'<p class="note">{escape(n)}</p>' for n in document.notes)
        + "</body></html>"
    )
    return page.encode("utf-8")
