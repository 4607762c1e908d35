"""The compliance report laid out in one language: a summary page, then one section per clause,
each made of figures, tables and charts. The three renderers (HTML, PDF, CSV) draw the same
document, so they always show the same numbers.

Tables keep every row (the CSV has them all); the HTML and PDF show the first ``shown`` and say
how many more the CSV holds. Times are the park's local time; durations are minutes with one
decimal unless said otherwise. Every row names the stored row behind it (alert, task, work
order, incident, training session ids; a device and a reason for the intactness record).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from compliance.history import TimeTally
from compliance.intactness import TARGET_PERCENT, Tally
from compliance.report import (
    SEVERITIES,
    AlertRow,
    ComplianceReport,
    Durations,
    Names,
)

Lang = Literal["zh", "en"]
LANGS: tuple[str, ...] = ("zh", "en")
SHOWN = 40

T: dict[str, tuple[str, str]] = {
    "title": ("园区消防与安全合规月报", "Park fire and safety compliance report"),
    "site": ("园区", "Site"),
    "period": ("报告期", "Period"),
    "timezone": ("时区", "Time zone"),
    "as_of": ("数据截至", "Data as recorded by"),
    "generated": ("生成时间", "Generated"),
    "summary": ("摘要", "Summary"),
    "clause": ("条款", "Clause"),
    "topic": ("内容", "Topic"),
    "verdict": ("结论", "Verdict"),
    "figures": ("主要数据", "Key figures"),
    "ok": ("达标", "Met"),
    "not_ok": ("未达标", "Not met"),
    "no_data": ("无数据", "No data"),
    "green_means": ("判定标准：", "Green means: "),
    "more_rows": ("另有 {n} 行见 CSV 文件 {file}", "{n} more rows in the CSV file {file}"),
    "none": ("无", "None"),
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    "ongoing": ("持续中", "ongoing"),
    "before_record": ("记录之前", "before the record"),
    # clauses
    "c554": ("5.5.4 消防设施完好率", "5.5.4 Fire facilities intact"),
    "c555": ("5.5.5 消防通道畅通", "5.5.5 Fire lanes clear"),
    "c553": ("5.5.3 危险品存放", "5.5.3 Hazardous goods"),
    "c552": ("5.5.2 应急预案与演练", "5.5.2 Emergency plans and drills"),
    "c551": ("5.5.1 安全教育培训", "5.5.1 Safety training"),
    "calarms": ("报警处置", "Alarm handling"),
    "c71": ("7.1/7.2 自查自纠与整改", "7.1/7.2 Self-inspection and corrective action"),
    "cdata": ("数据完整性", "Data completeness"),
    "g554": (
        "报告期内在用消防设施按时间加权完好率为 100%，期末完好率为 100%，且无漏检。",
        "time-weighted and end-of-period intactness of the fire facilities in use are 100 % "
        "and no inspection was missed.",
    ),
    "g555": (
        "报告期内无消防通道占用报警，占用时长为 0。",
        "no fire-lane obstruction alert and no obstructed minute in the period.",
    ),
    "g553": (
        "报告期内无可燃气体报警、无危险品离开规定区域、无危险品库门或温度报警。",
        "no gas alarm, no hazardous goods outside their zone, no hazmat-store door or "
        "temperature alert in the period.",
    ),
    "g552": (
        "六类预案齐全，且每个预案的最近一次演练在法定间隔内（综合/专项预案每年至少一次，现场处置方案每半年至少一次）。",
        "a plan exists for each of the six emergencies and each plan's latest drill is within "
        "its legal interval (comprehensive/special: once a year; on-site: every six months).",
    ),
    "g551": (
        "报告期末前 {days} 天内至少举办过一次安全培训。",
        "a safety training session was held within {days} days before the period's end.",
    ),
    "galarms": (
        "每个报警都在承诺时间内确认和处置完毕（承诺时间见下表）。",
        "every alarm was acknowledged and resolved within the promised time (see the table).",
    ),
    "g71": (
        "发现的每项不符合都已有完成的整改措施。",
        "every non-conformity found has a completed corrective action.",
    ),
    "gdata": (
        "报告期内数据连续：没有采集中断（设备状态未知）和无数据时段。",
        "the record is continuous: no collector interruption (presence unknown) and no "
        "stretch without data.",
    ),
    # 5.5.4
    "tw": ("时间加权完好率", "Time-weighted intactness"),
    "end_rate": ("期末完好率", "End-of-period intactness"),
    "online_rate": ("物联网在线率", "IoT online rate"),
    "devices_counted": ("统计设备数", "Devices counted"),
    "target": ("目标", "Target"),
    "mttr": ("平均恢复时间", "Mean time to restore"),
    "restored": ("已恢复的不完好", "Outages restored"),
    "not_restored": ("期末未恢复", "Not restored at the end"),
    "by_category": ("按设施类别", "By facility category"),
    "by_building": ("按建筑", "By building"),
    "category": ("类别", "Category"),
    "building": ("建筑", "Building"),
    "outdoor": ("室外", "Outdoors"),
    "scope_min": ("在用设备分钟数", "Device-minutes in use"),
    "intact_min": ("完好设备分钟数", "Device-minutes intact"),
    "tw_pct": ("加权完好率", "Time-weighted %"),
    "end_in_scope": ("期末在用", "In use at end"),
    "end_intact": ("期末完好", "Intact at end"),
    "end_pct": ("期末完好率", "End %"),
    "chart": ("完好率曲线（每 {step} 小时采样）", "Intactness over the period (every {step} h)"),
    "chart_cat": ("各类别时间加权完好率", "Time-weighted intactness by category"),
    "intervals": ("不完好时段明细", "Every non-intact interval"),
    "device": ("设备", "Device"),
    "label": ("名称", "Label"),
    "reason": ("原因", "Reason"),
    "source": ("来源", "Source"),
    "from": ("开始", "From"),
    "to": ("结束", "To"),
    "minutes_in_period": ("期内时长(分钟)", "Minutes in period"),
    "evidence": ("依据", "Evidence"),
    "reasons_total": ("不完好时长按原因", "Non-intact device-minutes by reason"),
    "minutes": ("分钟", "Minutes"),
    "inspections": ("巡检任务（到期日在报告期内）", "Inspection tasks due in the period"),
    "kind": ("类型", "Kind"),
    "due": ("应检", "Due"),
    "on_time": ("按时完成", "On time"),
    "late": ("逾期完成", "Late"),
    "missed": ("漏检", "Missed"),
    "not_yet_due": ("未到期", "Not yet due"),
    "failed": ("不合格", "Failed"),
    "task_ids": ("任务编号", "Task ids"),
    "work_orders": ("维修工单", "Work orders"),
    "opened": ("新开", "Opened"),
    "closed": ("关闭", "Closed"),
    "open_at_end": ("期末未关闭", "Open at the end"),
    "mean_close": ("平均处理时长", "Mean time to close"),
    "ids": ("编号", "Ids"),
    "oos": ("停用设备（不计入完好率）", "Devices out of service (not counted)"),
    "by": ("操作人", "By"),
    "not_classified": ("类型未知、未计入的设备", "Devices of unknown type, not counted"),
    # 5.5.5
    "lanes": ("各消防通道", "Per fire lane"),
    "lane": ("通道监测点", "Lane monitor"),
    "zone": ("区域", "Zone"),
    "alerts": ("报警", "Alerts"),
    "obstructions": ("占用次数", "Obstructions"),
    "obstructed_min": ("占用总时长(分钟)", "Obstructed (min)"),
    "longest_min": ("最长一次(分钟)", "Longest (min)"),
    "longest_from": ("最长一次开始", "Longest began"),
    "no_data_min": ("无数据(分钟)", "No data (min)"),
    "alert_ids": ("报警编号", "Alert ids"),
    "lane_alerts": ("消防通道占用报警", "Fire-lane obstruction alerts"),
    "total_obstructed": ("占用总时长", "Total obstructed"),
    # alert table
    "alert": ("报警编号", "Alert"),
    "rule": ("规则", "Rule"),
    "severity": ("级别", "Severity"),
    "first_seen": ("首次出现", "First seen"),
    "ended": ("结束", "Ended"),
    "duration_min": ("持续(分钟)", "Duration (min)"),
    "value": ("读数", "Value"),
    "state": ("状态", "State"),
    # 5.5.3
    "gas": ("可燃气体报警", "Combustible gas alarms"),
    "gas_level": ("{n} 级", "Level {n}"),
    "gas_l1": ("一级（≤25% LEL）", "Level 1 (≤25 % LEL)"),
    "gas_l2": ("二级（≤50% LEL）", "Level 2 (≤50 % LEL)"),
    "out_of_zone": ("危险品离开规定区域", "Hazardous goods outside their zone"),
    "door": ("危险品库门长时间敞开", "Hazmat-store door left open"),
    "temperature": ("危险品库温度过高", "Hazmat-store temperature"),
    "other_hazmat": ("危险品库其他报警", "Other hazmat-store alerts"),
    "hazmat_alerts": ("危险品相关报警明细", "Hazardous-goods alerts"),
    "topic_col": ("类别", "Topic"),
    # 5.5.2
    "incidents": ("真实突发事件", "Real incidents"),
    "incident": ("事件编号", "Incident"),
    "plan": ("预案", "Plan"),
    "plan_type": ("类型", "Type"),
    "level": ("层级", "Level"),
    "activated": ("启动", "Activated"),
    "trigger": ("触发", "Trigger"),
    "steps": ("步骤", "Steps"),
    "punctuality": ("按时率", "Punctuality"),
    "first_step": ("首步完成(分钟)", "First step (min)"),
    "closed_at": ("关闭", "Closed"),
    "closing_summary": ("总结", "Summary"),
    "drills": ("各预案演练情况", "Drills per plan"),
    "required": ("法定频次", "Required"),
    "every_year": ("每年至少1次", "at least yearly"),
    "every_half_year": ("每半年至少1次", "at least every 6 months"),
    "drills_in_period": ("本期演练", "Drills in period"),
    "last_drill": ("最近一次演练", "Last drill"),
    "next_due": ("下次最迟", "Next due by"),
    "never": ("从未演练", "never"),
    "missing_types": ("缺少预案的突发事件类型", "Emergencies without a plan"),
    "plans_from_record": (
        "未提供预案清单：预案取自事件记录。",
        "No plan list was given: plans are taken from the incident record.",
    ),
    "real_count": ("真实事件", "Real incidents"),
    "drill_count": ("本期演练", "Drills in period"),
    "drills_overdue": ("演练逾期的预案", "Plans with a drill overdue"),
    # 5.5.1
    "sessions": ("培训场次", "Sessions held"),
    "people": ("培训人次", "People trained"),
    "named": ("登记姓名人数", "Named attendees"),
    "last_session": ("最近一次培训", "Last session"),
    "date": ("日期", "Date"),
    "trainer": ("培训人", "Trainer"),
    "count": ("人数", "Count"),
    "attendees": ("参加人员", "Attendees"),
    "hours": ("学时", "Hours"),
    "training_register": ("培训记录", "Training register"),
    # alarms
    "alarms_total": ("报警总数", "Alarms"),
    "by_rule": ("按类型和级别", "By type and severity"),
    "total": ("合计", "Total"),
    "ack": ("确认用时", "Time to acknowledge"),
    "resolve": ("处置用时", "Time to resolve"),
    "n": ("样本数", "n"),
    "p50": ("中位数 p50", "p50"),
    "p90": ("p90", "p90"),
    "max": ("最大", "max"),
    "promise": ("承诺", "Promise"),
    "within": ("承诺内", "Within promise"),
    "ack_late": ("超时确认", "Acknowledged late"),
    "resolve_late": ("超时处置", "Resolved late"),
    "never_acked": ("无人确认（系统自动恢复或仍未处理）", "Never acknowledged"),
    "still_open": ("期末未关闭", "Still open"),
    "escalations": ("升级", "Escalations"),
    "at": ("时间", "At"),
    "note": ("说明", "Note"),
    "shelved": ("搁置的报警", "Shelved alarms"),
    "until": ("搁置至", "Until"),
    "why": ("原因", "Reason"),
    "false_alarms": ("误报", "False alarms"),
    "false_def": (
        "误报定义：由人工（非系统）处置、处置说明中含有“误报”或“false alarm”的报警。",
        "A false alarm is an alert resolved by a person (not the system) with a note "
        "containing “误报” or “false alarm”.",
    ),
    "drill_alerts": (
        "演练产生的报警 {n} 条不计入以上数据。",
        "{n} alerts raised by drills are left out of these figures.",
    ),
    "pct_def": (
        "百分位按最近秩法计算；用时从报警首次出现算起。",
        "Percentiles are nearest-rank; times count from the alert's first occurrence.",
    ),
    "all": ("全部", "All"),
    "all_alarms": ("报警明细", "Every alarm"),
    "acked_at": ("确认用时(分钟)", "Ack (min)"),
    # 7.1
    "nonconformities": ("不符合项与整改", "Non-conformities and corrective actions"),
    "ref": ("记录", "Record"),
    "found": ("发现时间", "Found"),
    "what": ("内容", "What"),
    "action": ("整改措施", "Corrective action"),
    "action_ref": ("整改记录", "Action record"),
    "done_at": ("完成时间", "Done"),
    "open_items": ("未完成整改", "Open"),
    "nc_total": ("不符合项", "Non-conformities"),
    # data
    "gaps": ("数据缺口", "Gaps in the data"),
    "gap_kind": ("类型", "Kind"),
    "devices_affected": ("涉及设备", "Devices"),
    "cause": ("原因", "Cause"),
    "no_data_gap": ("无任何数据", "nothing recorded"),
    "presence_unknown": ("设备状态未知（采集中断）", "presence unknown (collector interrupted)"),
    "gap_minutes": ("缺口总时长(分钟)", "Gap minutes"),
    "gap_count": ("缺口数", "Gaps"),
    "recorded": ("期内记录的消息数", "Messages recorded in the period"),
    "registered": ("登记设备数", "Devices registered"),
    "gap_note": (
        "缺口期间的完好率按最后已知状态计算（状态未知超过一个心跳周期计为离线），不代表设施已被确认完好或损坏。",
        "During a gap the figures rest on the last known state (presence unknown for longer "
        "than one heartbeat window counts as offline); they do not confirm the facilities "
        "either way.",
    ),
    "nothing_recorded": (
        "报告期内未记录到任何设备数据：以下数据不能证明设施完好。",
        "Nothing was recorded from any device in the period: the figures below cannot show "
        "that the facilities were intact.",
    ),
    "readings_elsewhere": (
        "读数保存在时序库中，本节只根据事件和在线状态判断无数据时段。",
        "Readings are kept in the time-series store; stretches without data are judged from "
        "events and presence only.",
    ),
    "definitions": ("说明", "Definitions"),
    "def_intact": (
        "完好：设备在线、无故障/拆动/移除/喷放/遮挡/屏蔽、读数在正常范围、未被搁置、"
        "巡检未逾期、在使用年限内。按时间加权完好率 = 完好设备分钟数 ÷ 在用设备分钟数。",
        "Intact: online, no fault/tamper/removed/discharged/blocked/disabled condition, values "
        "in band, not shelved, no inspection overdue, within its service life. Time-weighted "
        "intactness = device-minutes intact ÷ device-minutes in use.",
    ),
    "def_trace": (
        "每个数据都可追溯到记录：报警、任务、工单、事件和培训均给出编号；完好率明细给出设备、原因和起止时间。",
        "Every figure traces to stored rows: alerts, tasks, work orders, incidents and "
        "training sessions by id; intactness by device, reason and times.",
    ),
}

REASON_NAMES: dict[str, str] = {
    "offline": "离线",
    "fault": "故障",
    "tamper": "被拆动",
    "removed": "被移除",
    "discharged": "已喷放",
    "blocked": "被遮挡/占用",
    "disabled": "点位屏蔽",
    "out_of_band": "读数超出正常范围",
    "shelved": "报警被搁置",
    "inspection_overdue": "巡检逾期",
    "service_overdue": "维保逾期",
    "scrap_overdue": "报废更换逾期",
    "inspection_failed": "巡检不合格未整改",
    "work_order_open": "维修工单未关闭",
    "past_scrap_date": "超过报废年限",
    "scrap_date_unknown": "报废日期不明",
}
SEVERITY_NAMES = {"critical": "紧急", "major": "重要", "minor": "次要", "warning": "提示"}
KIND_NAMES = {
    "inspection": ("巡检", "inspection"),
    "service": ("维保", "service"),
    "scrap": ("报废更换", "scrap"),
    "inspection_failed": ("巡检不合格", "inspection failed"),
    "inspection_missed": ("漏检", "inspection missed"),
    "inspection_late": ("逾期巡检", "inspection late"),
    "work_order": ("故障工单", "work order"),
    "drill_overdue": ("演练逾期", "drill overdue"),
    "plan_missing": ("缺少预案", "plan missing"),
}
PLAN_TYPES = {
    "fire": ("重大消防事件", "major fire"),
    "public_health": ("卫生防疫", "public health"),
    "chemical_leak": ("危险化学品泄漏", "hazardous-chemical leak"),
    "typhoon": ("台风", "typhoon"),
    "earthquake": ("地震", "earthquake"),
    "riot": ("暴乱", "riot"),
    "other": ("其他", "other"),
}
LEVELS = {
    "on_site": ("现场处置方案", "on-site"),
    "special": ("专项预案", "special"),
    "comprehensive": ("综合预案", "comprehensive"),
}


# ---- the document -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figure:
    label: str
    value: str
    ok: bool | None = None


@dataclass(slots=True)
class Table:
    key: str
    """The CSV file's name (without ``.csv``): ASCII, the same in both languages."""
    title: str
    columns: list[str]
    rows: list[list[str]]
    shown: int = SHOWN
    note: str | None = None


@dataclass(frozen=True, slots=True)
class LineChart:
    key: str
    title: str
    points: list[tuple[str, float | None]]
    """(tick label, percent) in order."""
    target: float


@dataclass(frozen=True, slots=True)
class BarChart:
    key: str
    title: str
    bars: list[tuple[str, float | None]]
    target: float


Block = Figure | Table | LineChart | BarChart | str


@dataclass(slots=True)
class Section:
    key: str
    title: str
    ok: bool | None
    rule: str
    """What green means."""
    figures: list[Figure] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)


@dataclass(slots=True)
class Document:
    lang: Lang
    title: str
    meta: list[tuple[str, str]]
    sections: list[Section]
    notes: list[str]

    def tables(self) -> list[Table]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Table)]

    def summary_table(self) -> Table:
        t = _Text(self.lang)
        return Table(
            "summary",
            t("summary"),
            [t("clause"), t("verdict"), t("figures")],
            [
                [s.title, t.verdict(s.ok), "; ".join(f"{f.label}: {f.value}" for f in s.figures)]
                for s in self.sections
            ],
        )


class _Text:
    def __init__(self, lang: Lang) -> None:
        self.lang = lang
        self.i = 0 if lang == "zh" else 1

    def __call__(self, key: str, **values: Any) -> str:
        text = T[key][self.i]
        return text.format(**values) if values else text

    def names(self, names: Names | None) -> str:
        if names is None:
            return ""
        return names.zh if self.lang == "zh" else names.en

    def pair(self, table: dict[str, tuple[str, str]], key: str) -> str:
        found = table.get(key)
        return found[self.i] if found else key

    def verdict(self, ok: bool | None) -> str:
        return self("no_data") if ok is None else self("ok") if ok else self("not_ok")

    def reason(self, code: str) -> str:
        return REASON_NAMES.get(code, code) if self.lang == "zh" else code

    def severity(self, code: str) -> str:
        return SEVERITY_NAMES.get(code, code) if self.lang == "zh" else code

    def duration(self, ms: float | None) -> str:
        if ms is None:
            return "—"
        s = ms / 1000
        if s < 120:
            return f"{s:.0f} 秒" if self.lang == "zh" else f"{s:.0f} s"
        if s < 7200:
            return f"{s / 60:.1f} 分钟" if self.lang == "zh" else f"{s / 60:.1f} min"
        if s < 3 * 86400:
            return f"{s / 3600:.1f} 小时" if self.lang == "zh" else f"{s / 3600:.1f} h"
        return f"{s / 86400:.1f} 天" if self.lang == "zh" else f"{s / 86400:.1f} d"


def minutes(ms: float | None) -> str:
    return "—" if ms is None else f"{ms / 60_000:.1f}"


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f} %".replace(".0000 %", " %")


def layout(report: ComplianceReport, lang: Lang) -> Document:
    """The report in ``lang`` (zh or en)."""
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r}: zh or en")
    t = _Text(lang)
    tz = ZoneInfo(report.period.timezone)

    def when(ms: int | None, missing: str = "—") -> str:
        if ms is None:
            return missing
        return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M")

    def device(device_id: str | None) -> str:
        if device_id is None:
            return ""
        label = report.devices.get(device_id)
        return f"{device_id} ({label})" if label and label != device_id else device_id

    period = report.period
    meta = [
        (t("site"), t.names(report.site)),
        (t("period"), f"{period.label} ({period.first_day} – {period.last_day})"),
        (t("timezone"), period.timezone),
        (t("as_of"), when(report.as_of_ms)),
        (t("generated"), when(report.generated_ms)),
    ]
    sections = [
        _facilities(report, t, when, device),
        _lanes(report, t, when, device),
        _hazmat(report, t, when, device),
        _plans(report, t, when),
        _training(report, t),
        _alarms(report, t, when, device),
        _self_inspection(report, t, when, device),
        _data(report, t, when),
    ]
    notes = [t("def_intact"), t("def_trace"), t("false_def"), t("pct_def")]
    return Document(lang, t("title"), meta, sections, notes)


def _alert_rows(rows: list[AlertRow], t: _Text, when: Any, device: Any) -> list[list[str]]:
    return [
        [
            str(a.id),
            f"{a.rule_id} {t.names(a.title)}",
            t.severity(a.severity),
            device(a.device_id),
            a.zone_id or "",
            when(a.first_seen_ms),
            when(a.ended_ms, t("ongoing")),
            minutes(a.duration_ms),
            "" if a.value is None else str(a.value),
        ]
        for a in rows
    ]


def _alert_columns(t: _Text) -> list[str]:
    return [
        t("alert"),
        t("rule"),
        t("severity"),
        t("device"),
        t("zone"),
        t("first_seen"),
        t("ended"),
        t("duration_min"),
        t("value"),
    ]


def _time_row(name: str, tw: TimeTally, end: Tally | None) -> list[str]:
    return [
        name,
        minutes(tw.scope_ms),
        minutes(tw.intact_ms),
        pct(tw.percent),
        str(end.in_scope) if end else "—",
        str(end.intact) if end else "—",
        pct(end.percent) if end else "—",
    ]


def _facilities(report: ComplianceReport, t: _Text, when: Any, device: Any) -> Section:
    f = report.facilities
    insp = f.inspections
    wo = f.work_orders
    section = Section("5.5.4", t("c554"), f.ok, t("g554"))
    section.figures = [
        Figure(
            t("tw"),
            pct(f.time_weighted.percent),
            f.time_weighted.ratio == 1 if f.time_weighted.scope_ms else None,
        ),
        Figure(
            t("end_rate"),
            pct(f.end_overall.percent),
            f.end_overall.intact == f.end_overall.in_scope if f.end_overall.in_scope else None,
        ),
        Figure(t("target"), f"{TARGET_PERCENT} %"),
        Figure(t("devices_counted"), str(f.devices_counted)),
        Figure(t("online_rate"), pct(f.online.percent)),
        Figure(t("missed"), f"{len(insp.missed)} / {len(insp.due)}", not insp.missed),
        Figure(t("mttr"), t.duration(f.mean_time_to_restore_ms)),
    ]
    columns = [
        t("category"),
        t("scope_min"),
        t("intact_min"),
        t("tw_pct"),
        t("end_in_scope"),
        t("end_intact"),
        t("end_pct"),
    ]
    categories = sorted(set(f.by_category) | set(f.end_by_category))
    section.blocks.append(
        Table(
            "intactness_by_category",
            t("by_category"),
            columns,
            [
                _time_row(
                    f"{t.names(report.categories.get(c))} ({c})",
                    f.by_category.get(c, TimeTally()),
                    f.end_by_category.get(c),
                )
                for c in categories
            ]
            + [_time_row(t("total"), f.time_weighted, f.end_overall)],
        )
    )
    buildings = sorted(set(f.by_building) | set(f.end_by_building), key=lambda b: b or "")
    section.blocks.append(
        Table(
            "intactness_by_building",
            t("by_building"),
            [t("building"), *columns[1:]],
            [
                _time_row(
                    f"{t.names(report.buildings.get(b))} ({b})" if b else t("outdoor"),
                    f.by_building.get(b, TimeTally()),
                    f.end_by_building.get(b),
                )
                for b in buildings
            ],
        )
    )
    step_h = report.config.chart_step_ms / 3_600_000
    section.blocks.append(
        LineChart(
            "intactness_series",
            t("chart", step=f"{step_h:g}"),
            [(when(s.at_ms), s.percent) for s in f.series],
            TARGET_PERCENT,
        )
    )
    section.blocks.append(
        BarChart(
            "intactness_categories",
            t("chart_cat"),
            [
                (t.names(report.categories.get(c)) or c, f.by_category[c].percent)
                for c in sorted(f.by_category)
            ],
            TARGET_PERCENT,
        )
    )
    section.blocks.append(
        Table(
            "intactness_series",
            t("chart", step=f"{step_h:g}"),
            [t("at"), t("end_in_scope"), t("end_intact"), t("end_pct")],
            [[when(s.at_ms), str(s.in_scope), str(s.intact), pct(s.percent)] for s in f.series],
            shown=0,
        )
    )
    section.blocks.append(
        Table(
            "non_intact_by_reason",
            t("reasons_total"),
            [t("reason"), t("minutes")],
            [[f"{t.reason(r)} ({r})", minutes(ms)] for r, ms in f.minutes_by_reason.items()],
        )
    )
    section.blocks.append(
        Table(
            "non_intact_intervals",
            t("intervals"),
            [
                t("device"),
                t("category"),
                t("building"),
                t("reason"),
                t("source"),
                t("from"),
                t("to"),
                t("minutes_in_period"),
                t("evidence"),
            ],
            [
                [
                    device(i.device_id),
                    i.category,
                    i.building_id or "",
                    t.reason(i.reason),
                    i.source,
                    when(i.start_ms, t("before_record")),
                    when(i.end_ms, t("ongoing")),
                    minutes(i.in_period_ms),
                    _evidence(i.evidence),
                ]
                for i in f.intervals
            ],
        )
    )
    kinds = sorted(insp.by_kind)
    section.blocks.append(
        Table(
            "inspections",
            t("inspections"),
            [
                t("kind"),
                t("due"),
                t("on_time"),
                t("late"),
                t("missed"),
                t("not_yet_due"),
                t("failed"),
            ],
            [
                [t.pair(KIND_NAMES, k)]
                + [
                    str(insp.by_kind[k][c])
                    for c in ("due", "on_time", "late", "missed", "not_yet_due", "failed")
                ]
                for k in kinds
            ]
            + [
                [
                    t("total"),
                    str(len(insp.due)),
                    str(len(insp.on_time)),
                    str(len(insp.late)),
                    str(len(insp.missed)),
                    str(len(insp.not_yet_due)),
                    str(len(insp.failed)),
                ]
            ],
            note=f"{t('missed')}: {_ids(insp.missed)}; {t('late')}: {_ids(insp.late)}; "
            f"{t('failed')}: {_ids(insp.failed)}",
        )
    )
    section.blocks.append(
        Table(
            "work_orders",
            t("work_orders"),
            [t("kind"), t("count"), t("ids")],
            [
                [t("opened"), str(len(wo.opened)), _ids(wo.opened)],
                [t("closed"), str(len(wo.closed)), _ids(wo.closed)],
                [t("open_at_end"), str(len(wo.open_at_end)), _ids(wo.open_at_end)],
                [t("mean_close"), t.duration(wo.mean_close_ms), ""],
                [
                    t("mttr"),
                    t.duration(f.mean_time_to_restore_ms),
                    f"{t('restored')}: {f.restored}; {t('not_restored')}: {f.not_restored}",
                ],
            ],
        )
    )
    if f.out_of_service:
        section.blocks.append(
            Table(
                "out_of_service",
                t("oos"),
                [t("ref"), t("device"), t("from"), t("to"), t("by"), t("why")],
                [
                    [
                        str(o["id"]),
                        device(o["device_id"]),
                        when(o["since_ms"]),
                        when(o["until_ms"], t("ongoing")),
                        o["taken_by"],
                        o["reason"],
                    ]
                    for o in f.out_of_service
                ],
            )
        )
    if f.not_classified:
        section.blocks.append(f"{t('not_classified')}: {', '.join(f.not_classified[:50])}")
    return section


def _evidence(detail: dict[str, Any]) -> str:
    parts = []
    for key in ("alert_id", "task_id", "work_order_id", "key", "cause", "metric", "value", "why"):
        if key in detail and detail[key] is not None:
            parts.append(f"{key}={detail[key]}")
    return " ".join(parts)[:200]


def _ids(ids: list[int], limit: int = 30) -> str:
    if not ids:
        return "—"
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f" … (+{len(ids) - limit})" if len(ids) > limit else "")


def _lanes(report: ComplianceReport, t: _Text, when: Any, device: Any) -> Section:
    lanes = report.lanes
    section = Section("5.5.5", t("c555"), lanes.ok, t("g555"))
    longest = max(lanes.lanes, key=lambda lane: lane.longest_ms, default=None)
    section.figures = [
        Figure(t("lane_alerts"), str(len(lanes.alerts)), not lanes.alerts),
        Figure(t("total_obstructed"), t.duration(lanes.obstructed_ms), lanes.obstructed_ms == 0),
        Figure(t("longest_min"), minutes(longest.longest_ms if longest else 0)),
    ]
    section.blocks.append(
        Table(
            "fire_lanes",
            t("lanes"),
            [
                t("lane"),
                t("zone"),
                t("alerts"),
                t("obstructions"),
                t("obstructed_min"),
                t("longest_min"),
                t("longest_from"),
                t("no_data_min"),
                t("alert_ids"),
            ],
            [
                [
                    device(lane.device_id),
                    t.names(lane.zone) or lane.zone_id,
                    str(len(lane.alert_ids)),
                    str(len(lane.obstructions)),
                    minutes(lane.obstructed_ms),
                    minutes(lane.longest_ms),
                    when(lane.longest_start_ms),
                    minutes(lane.no_data_ms),
                    _ids(lane.alert_ids),
                ]
                for lane in lanes.lanes
            ],
        )
    )
    section.blocks.append(
        Table(
            "fire_lane_alerts",
            t("lane_alerts"),
            _alert_columns(t),
            _alert_rows(lanes.alerts, t, when, device),
        )
    )
    return section


def _hazmat(report: ComplianceReport, t: _Text, when: Any, device: Any) -> Section:
    h = report.hazmat
    section = Section("5.5.3", t("c553"), h.ok, t("g553"))
    section.figures = [
        Figure(t("gas_l1"), str(len(h.gas.get(1, []))), not h.gas.get(1)),
        Figure(t("gas_l2"), str(len(h.gas.get(2, []))), not h.gas.get(2)),
        Figure(t("out_of_zone"), str(len(h.out_of_zone)), not h.out_of_zone),
        Figure(t("door"), str(len(h.door)), not h.door),
        Figure(t("temperature"), str(len(h.temperature)), not h.temperature),
    ]
    rows: list[list[str]] = []
    groups: list[tuple[str, list[AlertRow]]] = [
        (
            t("gas_l1") if level == 1 else t("gas_l2") if level == 2 else t("gas_level", n=level),
            h.gas[level],
        )
        for level in sorted(h.gas)
    ]
    groups += [
        (t("out_of_zone"), h.out_of_zone),
        (t("door"), h.door),
        (t("temperature"), h.temperature),
        (t("other_hazmat"), h.other),
    ]
    for name, alerts in groups:
        rows.extend([name, *r] for r in _alert_rows(alerts, t, when, device))
    section.blocks.append(
        Table("hazmat_alerts", t("hazmat_alerts"), [t("topic_col"), *_alert_columns(t)], rows)
    )
    return section


def _plans(report: ComplianceReport, t: _Text, when: Any) -> Section:
    p = report.plans
    end = p.end_ms
    section = Section("5.5.2", t("c552"), p.ok, t("g552"))
    overdue = [d for d in p.drills if not d.ok(end)]
    section.figures = [
        Figure(t("real_count"), str(len(p.incidents))),
        Figure(t("drill_count"), str(sum(len(d.in_period) for d in p.drills))),
        Figure(t("drills_overdue"), str(len(overdue)), not overdue),
    ]
    if p.missing_types:
        section.figures.append(
            Figure(
                t("missing_types"), ", ".join(t.pair(PLAN_TYPES, m) for m in p.missing_types), False
            )
        )
    if p.plans_from_record:
        section.blocks.append(t("plans_from_record"))
    section.blocks.append(
        Table(
            "drills",
            t("drills"),
            [
                t("plan"),
                t("plan_type"),
                t("level"),
                t("required"),
                t("drills_in_period"),
                t("last_drill"),
                t("next_due"),
                t("verdict"),
            ],
            [
                [
                    f"{d.plan.id} {d.plan.title_zh if t.lang == 'zh' else d.plan.title_en}",
                    t.pair(PLAN_TYPES, d.plan.type),
                    t.pair(LEVELS, d.plan.level),
                    t("every_half_year") if d.plan.level == "on_site" else t("every_year"),
                    f"{len(d.in_period)} ({_ids(list(d.in_period))})" if d.in_period else "0",
                    when(d.last_ms, t("never")),
                    when(d.last_ms + d.every_ms) if d.last_ms is not None and d.every_ms else "—",
                    t.verdict(d.ok(end)),
                ]
                for d in p.drills
            ],
        )
    )
    section.blocks.append(
        Table(
            "incidents",
            t("incidents"),
            [
                t("incident"),
                t("plan"),
                t("zone"),
                t("trigger"),
                t("activated"),
                t("closed_at"),
                t("steps"),
                t("punctuality"),
                t("first_step"),
                t("alert_ids"),
                t("closing_summary"),
            ],
            [
                [
                    str(i.id),
                    f"{i.plan_id} {t.names(i.title)}",
                    t.names(i.zone) or (i.zone_id or ""),
                    i.trigger,
                    when(i.activated_ms),
                    when(i.closed_ms, t("ongoing")),
                    f"{i.steps}: {t('on_time')} {i.done_on_time}, {t('late')} {i.done_late}, "
                    f"{t('missed')} {i.overdue}, skip {i.skipped}",
                    pct(100 * i.punctuality if i.punctuality is not None else None),
                    minutes(
                        i.first_step_ms - i.activated_ms if i.first_step_ms is not None else None
                    ),
                    _ids(list(i.alert_ids)),
                    (i.summary or "")[:200],
                ]
                for i in p.incidents
            ],
        )
    )
    return section


def _training(report: ComplianceReport, t: _Text) -> Section:
    tr = report.training
    section = Section("5.5.1", t("c551"), tr.ok, t("g551", days=tr.every_days))
    section.figures = [
        Figure(t("sessions"), str(len(tr.sessions)), bool(tr.sessions) or None),
        Figure(t("people"), str(tr.people_trained)),
        Figure(
            t("last_session"),
            tr.last_before_end.held_on.isoformat() if tr.last_before_end else "—",
            tr.ok,
        ),
    ]
    section.blocks.append(
        Table(
            "training",
            t("training_register"),
            ["id", t("date"), t("topic"), t("trainer"), t("count"), t("hours"), t("attendees")],
            [
                [
                    str(s.id),
                    s.held_on.isoformat(),
                    s.topic,
                    s.trainer,
                    str(s.attendee_count),
                    "" if s.hours is None else f"{s.hours:g}",
                    "、".join(s.attendees) if t.lang == "zh" else ", ".join(s.attendees),
                ]
                for s in tr.sessions
            ],
        )
    )
    return section


def _durations_row(name: str, d: Durations, t: _Text) -> list[str]:
    return [
        name,
        str(d.n),
        t.duration(d.percentile(50)),
        t.duration(d.percentile(90)),
        t.duration(d.max),
        t.duration(d.promise_ms) if d.promise_ms is not None else "—",
        "—" if d.within is None else f"{d.within}/{d.n}",
    ]


def _alarms(report: ComplianceReport, t: _Text, when: Any, device: Any) -> Section:
    a = report.alarms
    section = Section("alarms", t("calarms"), a.ok, t("galarms"))
    everything = a.ack["all"]
    section.figures = [
        Figure(t("alarms_total"), str(len(a.alerts))),
        Figure(f"{t('ack')} p90", t.duration(everything.percentile(90))),
        Figure(t("ack_late"), str(len(a.ack_late)), not a.ack_late),
        Figure(t("resolve_late"), str(len(a.resolve_late)), not a.resolve_late),
        Figure(t("false_alarms"), str(len(a.false_alarms))),
    ]
    section.blocks.append(
        Table(
            "alarms_by_rule",
            t("by_rule"),
            [t("rule"), *[t.severity(s) for s in SEVERITIES], t("total")],
            [
                [
                    f"{rule} {t.names(a.titles.get(rule))}",
                    *[str(c.get(s, 0)) for s in SEVERITIES],
                    str(sum(c.values())),
                ]
                for rule, c in a.by_rule.items()
            ]
            + [
                [
                    t("total"),
                    *[str(sum(c.get(s, 0) for c in a.by_rule.values())) for s in SEVERITIES],
                    str(len(a.alerts)),
                ]
            ],
        )
    )
    columns = [t("severity"), t("n"), t("p50"), t("p90"), t("max"), t("promise"), t("within")]
    for key, stats, late in (("ack", a.ack, a.ack_late), ("resolve", a.resolve, a.resolve_late)):
        section.blocks.append(
            Table(
                f"alarm_time_to_{'acknowledge' if key == 'ack' else 'resolve'}",
                t(key),
                columns,
                [_durations_row(t.severity(s), stats[s], t) for s in SEVERITIES if s in stats]
                + [_durations_row(t("all"), stats["all"], t)],
                note=f"{t(key + '_late')}: {_ids(late)}",
            )
        )
    section.blocks.append(
        f"{t('never_acked')}: {len(a.never_acked)} ({_ids(a.never_acked)}); "
        f"{t('still_open')}: {len(a.still_open)} ({_ids(a.still_open)})"
    )
    section.blocks.append(
        Table(
            "escalations",
            t("escalations"),
            [t("alert"), t("rule"), t("at"), t("note")],
            [[str(e.alert_id), e.rule_id, when(e.at_ms), e.note or ""] for e in a.escalations],
        )
    )
    section.blocks.append(
        Table(
            "shelved_alarms",
            t("shelved"),
            [t("alert"), t("rule"), t("device"), t("by"), t("at"), t("until"), t("why")],
            [
                [
                    str(s.alert_id),
                    s.rule_id,
                    device(s.device_id),
                    s.by,
                    when(s.at_ms),
                    when(s.until_ms),
                    s.reason or "",
                ]
                for s in a.shelvings
            ],
        )
    )
    section.blocks.append(
        Table(
            "false_alarms",
            t("false_alarms"),
            [t("alert"), t("rule"), t("device"), t("by"), t("at"), t("note")],
            [
                [str(f.alert_id), f.rule_id, device(f.device_id), f.by, when(f.at_ms), f.note[:200]]
                for f in a.false_alarms
            ],
            note=t("false_def"),
        )
    )
    section.blocks.append(
        Table("alarms", t("all_alarms"), _alert_columns(t), _alert_rows(a.alerts, t, when, device))
    )
    if a.drill_alerts:
        section.blocks.append(t("drill_alerts", n=len(a.drill_alerts)))
    return section


def _self_inspection(report: ComplianceReport, t: _Text, when: Any, device: Any) -> Section:
    s = report.self_inspection
    section = Section("7.1", t("c71"), s.ok, t("g71"))
    section.figures = [
        Figure(t("nc_total"), str(len(s.items))),
        Figure(t("open_items"), str(len(s.open)), not s.open),
    ]
    section.blocks.append(
        Table(
            "nonconformities",
            t("nonconformities"),
            [
                t("kind"),
                t("ref"),
                t("device"),
                t("found"),
                t("what"),
                t("action"),
                t("action_ref"),
                t("done_at"),
            ],
            [
                [
                    t.pair(KIND_NAMES, i.kind),
                    i.ref,
                    device(i.device_id),
                    when(i.found_ms),
                    i.what[:200],
                    (i.action or "")[:200],
                    i.action_ref or "",
                    when(i.closed_ms, t("ongoing")),
                ]
                for i in s.items
            ],
        )
    )
    return section


def _data(report: ComplianceReport, t: _Text, when: Any) -> Section:
    d = report.data
    section = Section("data", t("cdata"), d.ok, t("gdata"))
    end = report.end_ms
    total = sum((g.end_ms if g.end_ms is not None else end) - g.start_ms for g in d.gaps)
    section.figures = [
        Figure(t("gap_count"), str(len(d.gaps)), not d.gaps),
        Figure(t("gap_minutes"), minutes(total)),
        Figure(t("recorded"), str(d.recorded), d.recorded > 0),
    ]
    if d.recorded == 0:
        section.blocks.append(t("nothing_recorded"))
    elif not d.readings_checked:
        section.blocks.append(t("readings_elsewhere"))
    section.blocks.append(
        Table(
            "data_gaps",
            t("gaps"),
            [t("gap_kind"), t("from"), t("to"), t("minutes"), t("devices_affected"), t("cause")],
            [
                [
                    t("no_data_gap") if g.kind == "no_data" else t("presence_unknown"),
                    when(g.start_ms),
                    when(g.end_ms, t("ongoing")),
                    minutes((g.end_ms if g.end_ms is not None else end) - g.start_ms),
                    "" if g.devices is None else str(g.devices),
                    g.cause or "",
                ]
                for g in d.gaps
            ],
        )
    )
    if d.gaps:
        section.blocks.append(t("gap_note"))
    section.figures.append(Figure(t("registered"), str(d.devices)))
    return section


def summary_sentence(report: ComplianceReport) -> dict[str, Any]:
    """The verdicts and headline figures, language-neutral, for stored-report lists."""
    f = report.facilities
    return {
        "verdicts": report.verdicts(),
        "intactness_percent": f.time_weighted.percent,
        "end_intactness_percent": f.end_overall.percent,
        "alarms": len(report.alarms.alerts),
        "gaps": len(report.data.gaps),
    }
