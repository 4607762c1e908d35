// The ParkGuard security-room console: plain JavaScript, no build step, nothing from the
// internet. State lives in one object, exposed as window.pgConsole for the browser tests.
"use strict";

const SEVERITY_RANK = { critical: 0, major: 1, minor: 2, warning: 3 };
const STATE_RANK = { active: 0, acknowledged: 1, shelved: 2, resolved: 3 };
const ACTING_ROLES = ["operator", "manager", "admin"];
const STEP_ROLES = ["operator", "maintenance", "manager", "admin"];
const POLL_MS = 3000;
const SLOW_POLL_MS = 15000;
const BEEP_EVERY_MS = 2500;
const FAULT_WORDS = ["fault", "tamper", "battery", "disablement", "offline", "absence"];

const S = {
  me: null,
  csrf: null,
  layout: null,
  tz: "Asia/Shanghai",
  alerts: new Map(),
  devices: new Map(),
  zones: new Map(),
  deviceState: new Map(),
  zonesInAlarm: new Set(),
  counts: {},
  incidents: [],
  incidentsAvailable: null,
  selected: null,
  plan: null,
  es: null,
  incidentStream: null,
  sseOpen: false,
  pollOk: true,
  lost: false,
  live: false,
  loadingAlerts: false,
  buffered: [],
  timers: [],
  muted: sessionStorage.getItem("parkguard.muted") === "1",
  alerting: new Set(),
  sound: { plays: 0, silenced: 0, lastAt: null, error: null, audio: null },
  health: null,
  intactness: null,
};
window.pgConsole = S;

// ---- small helpers --------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c) el.append(c);
  return el;
}

const raw = (text) => h("span", { "data-raw": true, text });
const $ = (id) => document.getElementById(id);
const name = (names) => (names ? (LANG === "en" ? names.en : names.zh) : "");

function fmtTime(ms) {
  if (ms === null || ms === undefined) return "–";
  return new Intl.DateTimeFormat(LANG, {
    timeZone: S.tz, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  }).format(new Date(ms));
}

function fmtClock(ms) {
  return new Intl.DateTimeFormat(LANG, {
    timeZone: S.tz, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  }).format(new Date(ms));
}

function fmtSpan(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} ${t("sec")}`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} ${t("min")} ${s % 60} ${t("sec")}`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr} ${t("hour")} ${m % 60} ${t("min")}`;
  return `${Math.floor(hr / 24)} ${t("day")} ${hr % 24} ${t("hour")}`;
}

function parseMs(value) {
  return value ? Date.parse(value) : null;
}

class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
  }
}

async function api(path, { method = "GET", body, allow = [] } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && S.csrf) headers["X-CSRF-Token"] = S.csrf;
  let res;
  try {
    res = await fetch(path, {
      method, headers, credentials: "same-origin", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    connectionFailed("fetch " + path);
    throw new ApiError(0, "network");
  }
  let data = null;
  try { data = await res.json(); } catch (err) { data = null; }
  if (res.status === 401 && S.me && !path.startsWith("/api/v1/auth/")) {
    signedOut();
    throw new ApiError(401, data && data.detail);
  }
  if (!res.ok && !allow.includes(res.status)) {
    throw new ApiError(res.status, data && data.detail);
  }
  return data;
}

function readCookie(key) {
  for (const part of document.cookie.split(";")) {
    const [k, v] = part.trim().split("=");
    if (k === key) return decodeURIComponent(v || "");
  }
  return null;
}

// ---- signing in -----------------------------------------------------------------------------

async function boot() {
  applyStaticLabels();
  for (const b of document.querySelectorAll(".lang-toggle")) {
    b.addEventListener("click", () => { setLang(LANG === "en" ? "zh-CN" : "en"); renderAll(); });
  }
  $("login-form").addEventListener("submit", onLogin);
  $("logout").addEventListener("click", onLogout);
  $("play-scenario").addEventListener("click", () => { playScenario().catch(() => {}); });
  $("mute").addEventListener("click", () => {
    S.muted = !S.muted;
    sessionStorage.setItem("parkguard.muted", S.muted ? "1" : "0");
    renderMute();
  });
  $("reconnect").addEventListener("click", () => { openStream(); pollFast(); });
  for (const id of ["filter-severity", "filter-state", "filter-text"]) {
    $(id).addEventListener("input", renderAlerts);
  }
  renderMute();
  try {
    const me = await fetch("/api/v1/auth/me", { credentials: "same-origin", cache: "no-store" });
    if (me.ok) {
      const who = await me.json();
      return start(who, who.csrf_token || readCookie("parkguard_csrf"));
    }
  } catch (err) { /* the login form says the rest */ }
  showLogin();
}

function showLogin(message) {
  document.body.dataset.view = "login";
  $("login-error").textContent = message || "";
  $("login-user").focus();
}

async function onLogin(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  unlockAudio();
  const body = { username: $("login-user").value, password: $("login-password").value };
  let res;
  try {
    res = await fetch("/api/v1/auth/login", {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
  } catch (err) {
    $("login-error").textContent = t("conn_lost");
    return;
  }
  if (!res.ok) {
    $("login-error").textContent = t(res.status === 429 ? "login_limited" : "login_failed");
    return;
  }
  $("login-password").value = "";
  const who = await res.json();
  start(who, who.csrf_token);
}

async function onLogout() {
  try { await api("/api/v1/auth/logout", { method: "POST" }); } catch (err) { /* gone anyway */ }
  stopAll();
  S.me = null;
  S.csrf = null;
  showLogin();
}

function signedOut() {
  stopAll();
  S.me = null;
  showLogin(t("login_failed"));
}

function stopAll() {
  if (S.es) S.es.close();
  S.es = null;
  if (S.incidentStream) S.incidentStream.close();
  S.incidentStream = null;
  S.sseOpen = false;
  for (const id of S.timers) clearInterval(id);
  S.timers = [];
  S.alerting.clear();
  document.body.dataset.alerting = "false";
}

// The demo's simulated fleet: present only under `parkguard demo` (503 elsewhere).
async function loadScenarios() {
  let list;
  try {
    list = await api("/api/v1/demo/scenarios", { allow: [503, 403] });
  } catch (err) {
    return;
  }
  if (!Array.isArray(list) || !list.length) return;
  const select = $("scenario");
  select.replaceChildren();
  for (const sc of list) {
    const option = document.createElement("option");
    option.value = sc.name;
    option.textContent = LANG === "en" ? sc.title_en : sc.title_zh;
    select.appendChild(option);
  }
  $("demo-controls").hidden = false;
}

async function playScenario() {
  const name = $("scenario").value;
  if (!name) return;
  const started = await api(`/api/v1/demo/scenarios/${encodeURIComponent(name)}/play`, {
    method: "POST", body: { drill: true, speed: 1 },
  });
  document.body.dataset.lastScenario = started.scenario;
  $("play-scenario").title = t("scenario_started") + $("scenario").selectedOptions[0].textContent;
}

async function start(me, csrf) {
  S.me = me;
  S.csrf = csrf;
  document.body.dataset.view = "main";
  document.body.dataset.role = me.role;
  $("user-name").textContent = me.display_name || me.username;
  $("user-role").textContent = t("role_" + me.role);
  try {
    S.layout = await api("/api/v1/console/layout");
  } catch (err) {
    if (err.status === 401) return;
    S.layout = { buildings: [], zones: [], devices: [], timezone: S.tz, site_plan: [100, 100] };
  }
  S.tz = S.layout.timezone || S.tz;
  S.devices = new Map(S.layout.devices.map((d) => [d.id, d]));
  S.zones = new Map(S.layout.zones.map((z) => [z.id, z]));
  if (!S.plan) S.plan = firstPlan();
  loadScenarios();
  openStream();
  pollFast();
  pollSlow();
  S.timers.push(setInterval(pollFast, POLL_MS));
  S.timers.push(setInterval(pollSlow, SLOW_POLL_MS));
  S.timers.push(setInterval(tick, 1000));
  S.timers.push(setInterval(soundTick, BEEP_EVERY_MS));
  renderAll();
}

// ---- live connection ------------------------------------------------------------------------

function openStream() {
  if (S.es) S.es.close();
  S.sseOpen = false;
  const es = new EventSource("/api/v1/alerts/stream");
  S.es = es;
  es.addEventListener("open", () => {
    if (S.es !== es) return;
    S.sseOpen = true;
    loadAlerts();
    updateLive();
  });
  es.addEventListener("error", () => {
    if (S.es !== es) return;
    S.sseOpen = false;
    connectionFailed("stream");
    if (es.readyState === EventSource.CLOSED) {
      setTimeout(() => { if (S.es === es && S.me) openStream(); }, 2000);
    }
  });
  es.addEventListener("alert", (e) => {
    const change = JSON.parse(e.data);
    if (S.loadingAlerts) S.buffered.push(change);
    else onAlertChange(change);
  });
  es.addEventListener("resync", () => loadAlerts());
}

function openIncidentStream() {
  // Incident transitions (started, steps done or skipped, closed) refresh the panel at once;
  // its failures count as a lost connection like the alert stream's.
  const es = new EventSource("/api/v1/incidents/stream");
  S.incidentStream = es;
  let timer = null;
  const reload = () => { clearTimeout(timer); timer = setTimeout(loadIncidents, 200); };
  es.addEventListener("incident", reload);
  es.addEventListener("resync", reload);
  es.addEventListener("open", reload);
  es.addEventListener("error", () => {
    if (S.incidentStream !== es) return;
    connectionFailed("incident stream");
    if (es.readyState === EventSource.CLOSED) {
      S.incidentStream = null;  // reopened by the next poll that finds incidents served
      es.close();
    }
  });
}

function connectionFailed(what) {
  S.lost = true;
  S.lastFailure = what;
  updateLive();
}

function updateLive() {
  S.live = S.sseOpen && S.pollOk;
  if (S.live) S.lost = false;
  document.body.dataset.live = String(S.live);
  $("conn-banner").hidden = !S.me || (S.live && !S.lost);
}

// ---- data -----------------------------------------------------------------------------------

async function loadAlerts() {
  S.loadingAlerts = true;
  S.buffered = [];
  try {
    const [open, resolved] = await Promise.all([
      api("/api/v1/alerts?state=open&limit=500"),
      api("/api/v1/alerts?state=resolved&limit=100"),
    ]);
    S.alerts = new Map();
    for (const a of [...resolved.items, ...open.items]) S.alerts.set(a.id, a);
  } catch (err) {
    /* the banner or the login form says why */
  } finally {
    S.loadingAlerts = false;
  }
  for (const change of S.buffered.splice(0)) onAlertChange(change, true);
  refreshAlerting();
  renderAlerts();
  renderPlan();
  if (S.selected && S.selected.kind === "alert") showAlert(S.selected.id);
}

function onAlertChange(change, replayed) {
  const a = change.alert;
  if (!a) return;
  const before = S.alerts.get(a.id);
  S.alerts.set(a.id, a);
  if (a.device) {
    if (a.lifecycle !== "resolved" && !isFault(a)) S.deviceState.set(a.device, "alarm");
    scheduleStates();
  }
  if (a.zone && !a.device && a.lifecycle !== "resolved" && !isFault(a)) S.zonesInAlarm.add(a.zone);
  const fresh = ["raised", "escalated", "severity", "reactivated"].includes(change.action);
  if (!replayed && fresh && a.severity === "critical" && a.lifecycle === "active") {
    announce(a, !before);
  }
  refreshAlerting();
  renderAlerts();
  renderPlan();
  if (S.selected && S.selected.kind === "alert" && S.selected.id === a.id) showAlert(a.id);
  if (S.selected && S.selected.kind === "device" && S.selected.id === a.device) {
    showDevice(a.device);
  }
}

function isFault(a) {
  return a.kind === "absence" || FAULT_WORDS.some((w) => a.rule.includes(w));
}

let statesTimer = null;
function scheduleStates() {
  clearTimeout(statesTimer);
  statesTimer = setTimeout(loadStates, 300);
}

async function loadStates() {
  const states = await api("/api/v1/console/states");
  S.deviceState = new Map(states.devices.map((d) => [d.id, d.state]));
  S.zonesInAlarm = new Set(states.zones_in_alarm);
  S.counts = states.counts;
  renderFigures();
  renderPlan();
}

async function pollFast() {
  if (!S.me) return;
  try {
    const [health] = await Promise.all([
      api("/api/v1/health", { allow: [503] }),
      loadStates(),
    ]);
    S.health = health;
    S.pollOk = true;
  } catch (err) {
    if (err.status === 401) return;
    S.pollOk = false;
    connectionFailed("poll");
  }
  if (S.pollOk && !S.sseOpen && S.es && S.es.readyState === EventSource.CLOSED) openStream();
  updateLive();
  renderFigures();
}

async function pollSlow() {
  if (!S.me) return;
  try {
    S.intactness = await api("/api/v1/intactness", { allow: [404, 503] });
  } catch (err) {
    S.intactness = null;
  }
  await loadIncidents();
  renderFigures();
}

async function loadIncidents() {
  try {
    const list = await api("/api/v1/incidents?state=open&limit=20", { allow: [404, 503] });
    if (!list || !list.items) {
      S.incidentsAvailable = false;
      S.incidents = [];
    } else {
      S.incidentsAvailable = true;
      S.incidents = await Promise.all(list.items.map((i) => api(`/api/v1/incidents/${i.id}`)));
      if (!S.incidentStream) openIncidentStream();
    }
  } catch (err) {
    if (err.status === 0) return;
    S.incidentsAvailable = false;
  }
  renderIncidents();
}

// ---- sound and flash ------------------------------------------------------------------------

function refreshAlerting() {
  S.alerting = new Set(
    [...S.alerts.values()]
      .filter((a) => a.severity === "critical" && a.state === "active")
      .map((a) => a.id),
  );
  document.body.dataset.alerting = String(S.alerting.size > 0);
  const newest = [...S.alerts.values()].filter((a) => S.alerting.has(a.id))
    .sort((x, y) => y.last_seen_ms - x.last_seen_ms)[0];
  $("critical-banner").hidden = !newest;
  if (newest) {
    const where = S.zones.get(newest.zone);
    $("critical-text").replaceChildren(
      name(newest.title), " · ", name(where && where.name), " ", newest.device ? raw(newest.device) : "",
    );
  }
}

function announce(alert, isNew) {
  S.lastAnnounced = alert.id;
  beep();
  const device = alert.device && S.devices.get(alert.device);
  const planKey = device ? device.floor_id || "site" : alert.zone ? zonePlan(alert.zone) : null;
  if (isNew && planKey) {
    S.plan = planKey;
    if (device) S.selected = S.selected || { kind: "alert", id: alert.id };
  }
  if (isNew && !S.selected) S.selected = { kind: "alert", id: alert.id };
  if (isNew && S.selected && S.selected.kind === "alert") showAlert(S.selected.id);
}

function unlockAudio() {
  try {
    if (!S.sound.audio) S.sound.audio = new AudioContext();
    if (S.sound.audio.state === "suspended") S.sound.audio.resume();
  } catch (err) {
    S.sound.error = String(err);
  }
}

function beep() {
  S.sound.lastAt = Date.now();
  if (S.muted) {
    S.sound.silenced += 1;
    return;
  }
  S.sound.plays += 1;
  try {
    unlockAudio();
    const ctx = S.sound.audio;
    const at = ctx.currentTime;
    for (const [i, freq] of [[0, 880], [1, 660], [2, 880]]) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "square";
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.15, at + i * 0.2);
      gain.gain.setValueAtTime(0, at + i * 0.2 + 0.18);
      osc.connect(gain).connect(ctx.destination);
      osc.start(at + i * 0.2);
      osc.stop(at + i * 0.2 + 0.19);
    }
  } catch (err) {
    S.sound.error = String(err);
  }
}

function soundTick() {
  if (S.alerting.size > 0) beep();
}

function renderMute() {
  $("mute").textContent = t(S.muted ? "sound_off" : "sound_on");
  $("mute").dataset.muted = String(S.muted);
}

// ---- rendering: header ----------------------------------------------------------------------

function tick() {
  $("clock").textContent = fmtClock(Date.now());
  const now = Date.now();
  for (const el of document.querySelectorAll("[data-since]")) {
    el.textContent = fmtSpan(now - Number(el.dataset.since));
  }
  for (const el of document.querySelectorAll("[data-due]")) {
    const left = Number(el.dataset.due) - now;
    el.textContent = left >= 0 ? `${t("due_in")} ${fmtSpan(left)}` : `${t("overdue")} ${fmtSpan(-left)}`;
    el.closest("li").classList.toggle("overdue", left < 0);
  }
}

function renderFigures() {
  const site = S.layout && S.layout.site_name;
  $("site-name").textContent = name(site);
  const it = S.intactness;
  const fig = $("fig-intactness");
  if (it && typeof it.overall_percent === "number") {
    $("intactness-value").textContent = `${it.overall_percent.toFixed(1)}%`;
    $("intactness-target").textContent = `${it.target_percent}%`;
    $("intactness-bar").style.width = `${Math.min(100, it.overall_percent)}%`;
    fig.classList.toggle("short", it.overall_percent < it.target_percent);
  } else {
    $("intactness-value").textContent = "–";
  }
  const offline = S.counts.offline;
  $("offline-value").textContent = offline === undefined ? "–" : String(offline);
  $("offline-value").classList.toggle("warn", offline > 0);
  const hl = S.health;
  const dead = hl && hl.dead_letters ? hl.dead_letters.total : null;
  $("dead-value").textContent = dead === null || dead === undefined ? "–" : String(dead);
  $("dead-value").classList.toggle("warn", dead > 0);
  setStatus($("broker-value"), hl ? hl.broker.connected : null);
  setStatus($("db-value"), hl ? hl.database.ok : null);
}

function setStatus(el, ok) {
  el.textContent = t(ok === null || !S.pollOk ? "unknown" : ok ? "ok" : "down");
  el.classList.toggle("ok", ok === true && S.pollOk);
  el.classList.toggle("bad", ok === false || !S.pollOk);
}

// ---- rendering: alerts ----------------------------------------------------------------------

function visibleAlerts() {
  const sev = $("filter-severity").value;
  const state = $("filter-state").value;
  const text = $("filter-text").value.trim().toLowerCase();
  return [...S.alerts.values()]
    .filter((a) => !sev || a.severity === sev)
    .filter((a) => !state || (state === "open" ? a.lifecycle !== "resolved" : a.state === state))
    .filter((a) => {
      if (!text) return true;
      const zone = S.zones.get(a.zone);
      return [a.device, a.zone, zone && zone.name.zh, zone && zone.name.en, a.title.zh, a.title.en]
        .some((v) => v && v.toLowerCase().includes(text));
    })
    .sort((x, y) =>
      (x.state === "resolved") - (y.state === "resolved")
      || SEVERITY_RANK[x.severity] - SEVERITY_RANK[y.severity]
      || y.last_seen_ms - x.last_seen_ms
      || y.id - x.id);
}

function renderAlerts() {
  const list = visibleAlerts();
  const now = Date.now();
  const rows = list.map((a) => {
    const zone = S.zones.get(a.zone);
    const device = a.device && S.devices.get(a.device);
    const selected = S.selected && S.selected.kind === "alert" && S.selected.id === a.id;
    return h("li", {
      class: `alert sev-${a.severity} st-${a.state}${S.alerting.has(a.id) ? " flash" : ""}${selected ? " selected" : ""}`,
      dataset: { alertId: String(a.id), severity: a.severity, state: a.state, device: a.device || "", zone: a.zone || "", rule: a.rule },
      onclick: () => { S.selected = { kind: "alert", id: a.id }; renderAlerts(); showAlert(a.id); },
    },
      h("span", { class: "title" }, name(a.title),
        h("span", { class: `badge sev-${a.severity}`, text: t("sev_" + a.severity) }),
        h("span", { class: `badge st-${a.state}`, text: t("st_" + a.state) })),
      h("span", { class: "when" }, h("span", { "data-since": String(a.first_seen_ms), text: fmtSpan(now - a.first_seen_ms) })),
      h("span", { class: "where" }, zone ? name(zone.name) : raw(a.zone || ""), " ",
        device ? raw(device.id) : a.device ? raw(a.device) : ""),
      h("span", { class: "when" }, "× ", raw(String(a.count)), " · ", fmtClock(a.last_seen_ms)),
    );
  });
  $("alert-list").replaceChildren(...rows);
  $("alerts-empty").hidden = rows.length > 0;
}

// ---- rendering: alert detail ----------------------------------------------------------------

async function showAlert(id) {
  let a;
  try {
    a = await api(`/api/v1/alerts/${id}`);
  } catch (err) {
    return;
  }
  if (!S.selected || S.selected.kind !== "alert" || S.selected.id !== id) return;
  S.alerts.set(a.id, a);
  const zone = S.zones.get(a.zone);
  const can = ACTING_ROLES.includes(S.me.role);
  const facts = h("dl", { class: "facts" },
    h("dt", { text: t("severity") }), h("dd", {}, h("span", { class: `badge sev-${a.severity}`, text: t("sev_" + a.severity) })),
    h("dt", { text: t("state") }), h("dd", { id: "detail-state", "data-state": a.state }, t("st_" + a.state),
      a.flapping ? ` · ${t("flapping")}` : "", a.escalation_level ? ` · ${t("escalated")}` : ""),
    h("dt", { text: t("zone") }), h("dd", {}, zone ? name(zone.name) : raw(a.zone || "–")),
    h("dt", { text: t("device") }), h("dd", {}, a.device
      ? h("a", { href: "#", onclick: (e) => { e.preventDefault(); selectDevice(a.device); } }, raw(a.device))
      : "–"),
    h("dt", { text: t("count") }), h("dd", {}, raw(String(a.count))),
    h("dt", { text: t("first_seen") }), h("dd", { text: fmtTime(a.first_seen_ms) }),
    h("dt", { text: t("last_seen") }), h("dd", { text: fmtTime(a.last_seen_ms) }),
    a.acknowledged ? [h("dt", { text: t("acked_by") }), h("dd", {}, raw(a.acknowledged.by), " ", fmtTime(parseMs(a.acknowledged.at)))] : null,
    a.resolved ? [h("dt", { text: t("resolved_by") }), h("dd", {}, actorName(a.resolved.by), " ", fmtTime(parseMs(a.resolved.at)), a.resolved.note ? [" · ", raw(a.resolved.note)] : "")] : null,
    a.shelved ? [h("dt", { text: t("shelved_by") }), h("dd", {}, raw(a.shelved.by), ` ${t("until")} `, fmtTime(parseMs(a.shelved.until)), " · ", raw(a.shelved.reason))] : null,
  );
  const actions = can && a.lifecycle !== "resolved" ? alertActions(a) : null;
  const journal = h("ol", { class: "journal" }, a.journal.slice().reverse().map((j) =>
    h("li", {}, h("span", { class: "t", text: fmtTime(j.at_ms) }), actorName(j.actor), " · ",
      t("action_" + j.action) || j.action, j.note ? [" · ", raw(j.note)] : "")));
  $("detail").replaceChildren(
    h("h3", {}, name(a.title)),
    facts,
    actions || (can ? null : h("p", { class: "empty", text: t("read_only") })),
    h("h2", { text: t("journal") }),
    journal,
  );
}

function actorName(actor) {
  return actor === "system" ? h("span", { text: t("system") }) : raw(actor || "");
}

function alertActions(a) {
  const error = h("p", { class: "error", id: "action-error" });
  const note = h("textarea", { id: "note", rows: "2", maxlength: "2000", placeholder: t("note") });
  const reason = h("input", { id: "shelve-reason", maxlength: "2000", placeholder: t("reason") });
  const period = h("select", { id: "shelve-for" },
    [["30m", "minutes_30"], ["1h", "hour_1"], ["4h", "hours_4"], ["8h", "hours_8"], ["1d", "day_1"]]
      .map(([v, k]) => h("option", { value: v, text: t(k) })));
  const act = async (path, body) => {
    error.textContent = "";
    try {
      const updated = await api(`/api/v1/alerts/${a.id}/${path}`, { method: "POST", body });
      S.alerts.set(updated.id, updated);
      refreshAlerting();
      renderAlerts();
      scheduleStates();
      showAlert(a.id);
    } catch (err) {
      error.textContent = `${t("action_failed")}: ${err.message}`;
    }
  };
  return h("div", { class: "actions" },
    note,
    h("div", { class: "row" },
      a.lifecycle === "active" ? h("button", {
        id: "ack", type: "button", text: t("acknowledge"),
        onclick: () => act("ack", note.value.trim() ? { note: note.value.trim() } : {}),
      }) : null,
      h("button", {
        id: "resolve", type: "button", class: "danger", text: t("resolve"),
        onclick: () => {
          if (!note.value.trim()) { error.textContent = t("note_required"); return; }
          act("resolve", { note: note.value.trim() });
        },
      }),
      a.shelved ? h("button", { id: "unshelve", type: "button", text: t("unshelve"),
        onclick: () => act("unshelve", note.value.trim() ? { note: note.value.trim() } : {}) }) : null),
    a.shelved ? null : h("div", { class: "row" }, reason, period, h("button", {
      id: "shelve", type: "button", text: t("shelve"),
      onclick: () => {
        if (!reason.value.trim()) { error.textContent = t("reason_required"); return; }
        act("shelve", { reason: reason.value.trim(), for: period.value });
      },
    })),
    error,
  );
}

// ---- rendering: floor plan ------------------------------------------------------------------

function plans() {
  const out = [];
  const outdoor = S.layout ? S.layout.zones.filter((z) => !z.floor_id) : [];
  if (outdoor.length) out.push({ key: "site", label: t("site_plan"), width: S.layout.site_plan[0], height: S.layout.site_plan[1] });
  for (const b of (S.layout ? S.layout.buildings : [])) {
    for (const f of b.floors) out.push({ key: f.id, label: name(f.name), width: f.width, height: f.height });
  }
  return out;
}

function firstPlan() {
  const all = plans();
  const indoor = all.find((p) => p.key !== "site");
  return (indoor || all[0] || { key: null }).key;
}

function zonePlan(zoneId) {
  const z = S.zones.get(zoneId);
  return z ? z.floor_id || "site" : null;
}

function stateOf(deviceId) {
  return S.deviceState.get(deviceId) || "normal";
}

function renderPlan() {
  if (!S.layout) return;
  const all = plans();
  const alarmPlans = new Set();
  for (const [id, st] of S.deviceState) {
    const d = S.devices.get(id);
    if (d && st === "alarm") alarmPlans.add(d.floor_id || "site");
  }
  for (const z of S.zonesInAlarm) alarmPlans.add(zonePlan(z));
  $("plan-tabs").replaceChildren(...all.map((p) => h("button", {
    type: "button", class: `${p.key === S.plan ? "current" : ""} ${alarmPlans.has(p.key) ? "alarm" : ""}`,
    dataset: { plan: p.key }, text: p.label,
    onclick: () => { S.plan = p.key; renderPlan(); },
  })));
  const plan = all.find((p) => p.key === S.plan) || all[0];
  const root = $("plan");
  if (!plan) { root.replaceChildren(); return; }
  const W = plan.width;
  const H = plan.height;
  const size = Math.max(W, H);
  root.setAttribute("viewBox", `${-size * 0.01} ${-size * 0.01} ${W + size * 0.02} ${H + size * 0.02}`);
  root.dataset.plan = plan.key;
  const zones = S.layout.zones.filter((z) => (z.floor_id || "site") === plan.key);
  const shapes = zones.map((z) => svg("polygon", {
    class: `zone kind-${z.kind}${S.zonesInAlarm.has(z.id) ? " in-alarm" : ""}`,
    "data-zone-id": z.id,
    points: z.polygon.map(([x, y]) => `${x},${H - y}`).join(" "),
  }, svg("title", { text: name(z.name) })));
  const labels = zones.map((z) => {
    const xs = z.polygon.map((p) => p[0]);
    const ys = z.polygon.map((p) => p[1]);
    const cx = (Math.min(...xs) + Math.max(...xs)) / 2;
    const cy = (Math.min(...ys) + Math.max(...ys)) / 2;
    const label = name(z.name);
    let along = Math.max(...xs) - Math.min(...xs);
    let across = Math.max(...ys) - Math.min(...ys);
    const upright = across > along * 2;  // a narrow north-south zone (a fire lane): turn the label
    if (upright) [along, across] = [across, along];
    const wide = along / (Math.max(label.length, 2) * (LANG === "en" ? 0.6 : 1.05));
    const fit = Math.min(size / 40, across / 1.5, wide);
    return svg("text", {
      class: "zone-label", x: cx, y: H - cy, "font-size": Math.max(fit, size / 140),
      "text-anchor": "middle", "dominant-baseline": "middle", text: label,
      transform: upright ? `rotate(-90 ${cx} ${H - cy})` : null,
    });
  });
  const r = size / 110;
  const markers = [...S.devices.values()]
    .filter((d) => (d.floor_id || "site") === plan.key && d.x !== null && d.y !== null)
    .map((d) => {
      const st = stateOf(d.id);
      const selected = S.selected && S.selected.kind === "device" && S.selected.id === d.id;
      return svg("circle", {
        class: `marker ${st}${selected ? " selected" : ""}`, cx: d.x, cy: H - d.y,
        r: st === "normal" ? r : r * 1.5, "stroke-width": selected ? r / 1.5 : r / 3,
        "data-device-id": d.id, "data-state": st,
        onclick: () => selectDevice(d.id),
      }, svg("title", { text: `${d.label} · ${t("ds_" + st)}` }));
    });
  markers.sort((a, b) => (a.dataset.state === "normal") - (b.dataset.state === "normal")).reverse();
  root.replaceChildren(...shapes, ...labels, ...markers);
}

function selectDevice(id) {
  const d = S.devices.get(id);
  if (d) S.plan = d.floor_id || "site";
  S.selected = { kind: "device", id };
  renderAlerts();
  renderPlan();
  showDevice(id);
}

// ---- rendering: device detail ---------------------------------------------------------------

async function showDevice(id) {
  let d;
  let alerts;
  try {
    [d, alerts] = await Promise.all([
      api(`/api/v1/devices/${encodeURIComponent(id)}`),
      api(`/api/v1/alerts?device=${encodeURIComponent(id)}&limit=10`),
    ]);
  } catch (err) {
    return;
  }
  if (!S.selected || S.selected.kind !== "device" || S.selected.id !== id) return;
  const st = stateOf(id);
  const values = Object.entries(d.state.values);
  const numbers = values.filter(([, v]) => v.kind === "number");
  const numeric = numbers.find(([k]) => k !== "battery_pct") || numbers[0];
  const chart = h("div", { id: "device-chart" }, h("p", { class: "empty", text: t("no_readings") }));
  $("detail").replaceChildren(
    h("h3", {}, raw(d.label)),
    h("dl", { class: "facts" },
      h("dt", { text: t("state") }), h("dd", { id: "device-state", "data-state": st }, h("i", { class: `dot ${st}` }), t("ds_" + st)),
      h("dt", { text: t("type") }), h("dd", {}, name(d.type)),
      h("dt", { text: t("zone") }), h("dd", {}, name({ zh: d.zone.name_zh, en: d.zone.name_en })),
      h("dt", { text: t("presence") }), h("dd", {}, t(d.state.presence), d.state.last_seen ? ` · ${fmtTime(parseMs(d.state.last_seen))}` : ""),
      d.state.battery_pct !== null ? [h("dt", { text: t("battery") }), h("dd", {}, raw(`${Math.round(d.state.battery_pct)}%`))] : null,
      values.length ? [h("dt", { text: t("last_values") }), h("dd", {}, values.map(([k, v]) =>
        h("div", {}, raw(`${k}: ${v.value}${v.unit ? " " + v.unit : ""}`))))] : null,
    ),
    h("h2", { text: t("recent_readings") }),
    chart,
    h("h2", { text: t("device_alerts") }),
    h("ul", { class: "mini-alerts" }, alerts.items.map((a) => h("li", {},
      h("a", { href: "#", onclick: (e) => { e.preventDefault(); S.selected = { kind: "alert", id: a.id }; showAlert(a.id); renderAlerts(); } },
        h("span", { class: `badge sev-${a.severity}`, text: t("sev_" + a.severity) }), " ", name(a.title)),
      " · ", t("st_" + a.state), " · ", fmtTime(a.first_seen_ms)))),
  );
  if (numeric) drawChart(chart, id, numeric[0], numeric[1].unit);
}

async function drawChart(box, id, metric, unit) {
  const start = Date.now() - 6 * 3600 * 1000;
  let data;
  try {
    data = await api(`/api/v1/devices/${encodeURIComponent(id)}/readings?metric=${encodeURIComponent(metric)}&every=5m&start=${start}`);
  } catch (err) {
    return;
  }
  const points = (data.buckets || []).filter((b) => b.mean !== null);
  if (!points.length) return;
  const W = 300;
  const H = 90;
  const x0 = start;
  const x1 = Date.now();
  let lo = Math.min(...points.map((p) => p.min ?? p.mean));
  let hi = Math.max(...points.map((p) => p.max ?? p.mean));
  if (hi === lo) { hi += 1; lo -= 1; }
  const px = (ms) => 4 + ((ms - x0) / (x1 - x0)) * (W - 8);
  const py = (v) => H - 12 - ((v - lo) / (hi - lo)) * (H - 24);
  box.replaceChildren(svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, "data-metric": metric, "data-raw": "" },
    svg("polyline", { points: points.map((p) => `${px(p.start_ms).toFixed(1)},${py(p.mean).toFixed(1)}`).join(" ") }),
    svg("text", { x: 4, y: 9, text: `${metric} ${hi.toFixed(1)}${unit ? " " + unit : ""}` }),
    svg("text", { x: 4, y: H - 2, text: `${lo.toFixed(1)} · ${fmtClock(x0)} – ${fmtClock(x1)}` }),
  ));
}

// ---- rendering: incidents -------------------------------------------------------------------

function renderIncidents() {
  const box = $("incidents");
  if (S.incidentsAvailable === false) {
    box.replaceChildren(h("p", { class: "empty", text: t("not_available") }));
    return;
  }
  if (!S.incidents.length) {
    box.replaceChildren(h("p", { class: "empty", text: t("no_incidents") }));
    return;
  }
  const can = S.me && STEP_ROLES.includes(S.me.role);
  box.replaceChildren(...S.incidents.map((inc) => h("div", { class: "incident", dataset: { incidentId: String(inc.id) } },
    h("div", { class: "title" }, name(inc.title), inc.drill ? h("span", { class: "badge", text: t("drill") }) : null,
      h("span", { class: `badge sev-${inc.severity}`, text: t("sev_" + inc.severity) })),
    h("div", { class: "where" }, inc.zone_name ? name(inc.zone_name) : "", " · ", fmtTime(inc.activated_ms)),
    h("ol", { class: "steps" }, inc.steps.map((s) => h("li", { class: s.state, dataset: { step: s.id } },
      h("span", {}, name(s.text), " ", h("span", { class: "role", text: `(${name(s.role_title)})` })),
      s.state === "pending"
        ? h("span", { class: "due", "data-due": String(s.due_ms) })
        : h("span", { class: "due" }, t(s.state), s.by ? [" · ", raw(s.by)] : ""),
      s.state === "pending" && can ? stepActions(inc, s) : null))),
  )));
  tick();
}

function stepActions(inc, step) {
  const note = h("input", { maxlength: "2000", placeholder: t("note") });
  const post = async (path, body) => {
    try {
      await api(`/api/v1/incidents/${inc.id}/steps/${encodeURIComponent(step.id)}/${path}`, { method: "POST", body });
      loadIncidents();
    } catch (err) {
      note.value = "";
      note.placeholder = `${t("action_failed")}: ${err.message}`;
    }
  };
  return h("div", { class: "step-actions" }, note,
    h("button", { type: "button", class: "small", text: t("complete"), onclick: () => {
      const text = note.value.trim();
      if (step.requires !== "nothing" && !text) { note.placeholder = t("note_required"); return; }
      post("complete", step.requires === "evidence" ? { evidence: text } : text ? { note: text } : {});
    } }),
    h("button", { type: "button", class: "small", text: t("skip"), onclick: () => {
      if (!note.value.trim()) { note.placeholder = t("reason_required"); return; }
      post("skip", { reason: note.value.trim() });
    } }));
}

function renderAll() {
  applyStaticLabels();
  renderMute();
  if (S.me) $("user-role").textContent = t("role_" + S.me.role);
  renderFigures();
  renderAlerts();
  renderPlan();
  renderIncidents();
  refreshAlerting();
  tick();
  if (S.selected && S.selected.kind === "alert") showAlert(S.selected.id);
  if (S.selected && S.selected.kind === "device") showDevice(S.selected.id);
}

document.addEventListener("DOMContentLoaded", boot);
