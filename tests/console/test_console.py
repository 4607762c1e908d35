"""The security-room console as an operator uses it, in a real headless chromium against a real
`parkguard serve` and the machine's Mosquitto."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from playwright.sync_api import Page
from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

from core.contract import encode_event, encode_telemetry, now_ms, topic_for
from core.models_alerts import Alert
from core.models_auth import AuditRecord
from tests.collector.helpers import publish_all, wait_for
from tests.conftest import BROKER_HOST, BROKER_PORT
from tests.console.conftest import ADMIN_PASSWORD, Served, screenshot, serve, sign_in

SITE = "cdpark"
DETECTORS = ("A1-W1-SD001", "A1-W1-SD002")


def _fire(devices: tuple[str, ...]) -> None:
    t = now_ms()
    publish_all(
        (BROKER_HOST, BROKER_PORT),
        [(topic_for(SITE, d, "event"), encode_event(t, 1, "fire_alarm")) for d in devices],
    )


def test_a_wrong_password_is_refused_on_the_page(server: Served, page: Page) -> None:
    page.goto(f"{server.base}/")
    page.fill("#login-user", "admin")
    page.fill("#login-password", "not-the-password")
    page.click("#login-submit")
    page.wait_for_function("document.querySelector('#login-error').textContent.length > 0")
    assert page.locator("#login-error").inner_text() == "用户名或密码错误"
    assert page.evaluate("document.body.dataset.view") == "login"
    screenshot(page, "01-login-refused")


def test_an_alarm_appears_live_sounds_flashes_and_is_acknowledged(
    server: Served, page: Page
) -> None:
    sign_in(page, server.base)
    screenshot(page, "02-main-quiet")
    plays = page.evaluate("pgConsole.sound.plays")

    _fire(DETECTORS)
    published = time.monotonic()
    row = "#alert-list li[data-rule=fire-confirmed][data-zone=A1-W1][data-state=active]"
    page.wait_for_selector(row, timeout=1000)  # within a second, without reloading
    shown_after = time.monotonic() - published
    assert shown_after < 1.0

    assert page.evaluate("pgConsole.sound.plays") > plays  # the alert sound played
    assert page.evaluate("pgConsole.sound.error") is None
    assert page.evaluate("document.body.dataset.alerting") == "true"
    assert "flash" in (page.locator(row).get_attribute("class") or "")
    assert page.locator("#critical-banner").is_visible()

    # the floor plan marks the devices and the zone
    for device in DETECTORS:
        page.wait_for_selector(f"#plan circle[data-device-id={device}][data-state=alarm]")
    assert page.locator("#plan polygon[data-zone-id=A1-W1].in-alarm").count() == 1
    screenshot(page, "03-alarm")

    # muting stops the sound, not the flash
    page.click("#mute")
    plays = page.evaluate("pgConsole.sound.plays")
    page.wait_for_function("pgConsole.sound.silenced > 0", timeout=5000)
    assert page.evaluate("pgConsole.sound.plays") == plays
    assert "flash" in (page.locator(row).get_attribute("class") or "")
    page.click("#mute")

    page.click(row)
    page.wait_for_selector("#ack")
    screenshot(page, "04-alert-detail")
    page.fill("#note", "值班员已到场核实")
    page.click("#ack")
    page.wait_for_selector("#detail-state[data-state=acknowledged]")
    page.wait_for_function("document.body.dataset.alerting === 'false'")
    assert page.locator("#critical-banner").is_hidden()

    engine = create_engine(server.database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            alert = connection.execute(
                select(Alert.state, Alert.acked_by).where(Alert.rule_id == "fire-confirmed")
            ).one()
            audit = connection.execute(
                select(AuditRecord.actor, AuditRecord.status, AuditRecord.client_ip).where(
                    AuditRecord.route == "/api/v1/alerts/{alert_id}/ack"
                )
            ).all()
    finally:
        engine.dispose()
    assert tuple(alert) == ("acknowledged", "admin")
    assert [tuple(a) for a in audit] == [("admin", 200, "127.0.0.1")]

    page.click(f"#plan circle[data-device-id={DETECTORS[0]}]")
    page.wait_for_selector("#device-state[data-state=alarm]")
    assert DETECTORS[0] in page.locator("#detail h3").inner_text()

    # a device's recent readings, drawn from /readings?every=5m
    t = now_ms()
    publish_all(
        (BROKER_HOST, BROKER_PORT),
        [
            (
                topic_for(SITE, "A1-W1-SD003", "telemetry"),
                encode_telemetry(t - (40 - i) * 60_000, i + 1, {"obscuration_db_m": 0.02 * i}),
            )
            for i in range(40)
        ],
    )
    wait_for(
        lambda: page.evaluate("pgConsole.deviceState.get('A1-W1-SD003')") is None,
        what="SD003 online and normal",
    )
    page.click("#plan circle[data-device-id=A1-W1-SD003]")
    page.wait_for_selector("#device-chart svg[data-metric=obscuration_db_m] polyline")
    points = page.get_attribute("#device-chart polyline", "points") or ""
    assert len(points.split()) >= 8  # 40 minutes in 5-minute buckets
    screenshot(page, "05-device")


def test_the_chinese_page_has_no_untranslated_english_labels(server: Served, page: Page) -> None:
    sign_in(page, server.base, "zh-CN")
    _fire(("A1-W2-SD001", "A1-W2-SD002"))
    page.wait_for_selector("#alert-list li[data-rule=fire-confirmed][data-zone=A1-W2]")
    page.click("#alert-list li[data-rule=fire-confirmed][data-zone=A1-W2]")
    page.wait_for_selector("#ack")
    time.sleep(0.5)
    found = page.evaluate(_LEFTOVERS, r"[A-Za-z]{2,}")
    assert found == [], found
    keys = page.evaluate("[Object.keys(I18N['zh-CN']).sort(), Object.keys(I18N.en).sort()]")
    assert keys[0] == keys[1]
    screenshot(page, "06-zh")

    page.click("#top .lang-toggle")
    page.wait_for_function("document.documentElement.lang === 'en'")
    time.sleep(0.5)
    assert page.evaluate(_LEFTOVERS, r"[\u4e00-\u9fff]") == []
    screenshot(page, "07-en")


def test_an_incident_step_is_completed_with_a_note(server: Served, page: Page) -> None:
    sign_in(page, server.base)
    form = {"username": "admin", "password": ADMIN_PASSWORD}
    token = httpx.post(f"{server.base}/api/v1/auth/token", data=form).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    started = httpx.post(
        f"{server.base}/api/v1/plans/riot/activate",
        json={"reason": "演练：门口聚集", "zone": "A1-DOCK", "drill": True},
        headers=auth,
    )
    assert started.status_code in (200, 201), started.text
    incident = started.json()["id"]
    step = started.json()["steps"][0]["id"]
    row = f"#incidents [data-incident-id='{incident}'] li[data-step='{step}']"
    page.wait_for_selector(row + " [data-due]", timeout=5000)  # pushed, not polled
    countdown = page.locator(row + " [data-due]").inner_text()
    assert countdown.startswith("剩余")
    page.fill(row + " input", "已通知保安队")
    page.click(row + " button >> nth=0")
    page.wait_for_selector(row + ".done", timeout=5000)
    screenshot(page, "09-incident")
    detail = httpx.get(f"{server.base}/api/v1/incidents/{incident}", headers=auth).json()
    done = next(s for s in detail["steps"] if s["id"] == step)
    assert (done["state"], done["by"]) == ("done", "admin")
    assert "已通知保安队" in (done["note"] or done["evidence"] or "")


def test_the_page_says_at_once_when_the_server_is_gone_and_reconnects(
    tmp_path: Path, page: Page
) -> None:
    own = serve(tmp_path / "banner")
    try:
        sign_in(page, own.base)
        assert page.locator("#conn-banner").is_hidden()
        own.stop()
        page.wait_for_selector("#conn-banner", state="visible", timeout=5000)
        assert page.evaluate("document.body.dataset.live") == "false"
        assert page.evaluate("pgConsole.live") is False
        screenshot(page, "08-connection-lost")
        own.start()
        page.wait_for_selector("#conn-banner", state="hidden", timeout=15_000)
        assert page.evaluate("document.body.dataset.live") == "true"
    finally:
        own.stop()


def test_sign_in_keeps_no_password_in_the_page(server: Served, page: Page) -> None:
    sign_in(page, server.base)
    assert page.locator("#login-password").input_value() == ""
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["parkguard_session"]["httpOnly"] is True
    assert cookies["parkguard_session"]["sameSite"] == "Strict"
    assert ADMIN_PASSWORD not in page.content()
    wait_for(lambda: page.evaluate("pgConsole.live") is True, what="live")
    # times are the park's (settings.timezone, Asia/Shanghai here), whatever the browser's
    assert page.evaluate("pgConsole.tz") == "Asia/Shanghai"
    shown = page.locator("#clock").inner_text()
    park = datetime.now(ZoneInfo("Asia/Shanghai"))
    assert shown[:2] in {f"{park.hour:02d}", f"{(park.hour + 1) % 24:02d}"}, shown


# Visible text (and placeholders and titles) outside [data-raw] — user data such as device ids,
# names and notes — that matches the pattern.
_LEFTOVERS = """(pattern) => {
  const re = new RegExp(pattern);
  const out = [];
  const visible = (el) => el && el.getClientRects().length > 0
    && getComputedStyle(el).visibility !== 'hidden';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest('[data-raw], script, style, title') || !visible(el)) continue;
    if (re.test(n.textContent)) out.push(n.textContent.trim());
  }
  for (const el of document.querySelectorAll('[placeholder], [title]')) {
    if (el.closest('[data-raw]') || !visible(el)) continue;
    for (const a of ['placeholder', 'title']) {
      const v = el.getAttribute(a);
      if (v && re.test(v)) out.push(`${a}: ${v}`);
    }
  }
  return out;
}"""
