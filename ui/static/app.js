// The page's loop: once a second it asks this node for Members, Status and
// /metrics, redraws the cards, appends timeline events and chart points.

import { call } from "./api.js";
import { bindSecret } from "./secret.js";
import { h, $, clock } from "./dom.js";
import { normalize, markJoining, diff } from "./timeline.js";
import * as members from "./members.js";
import * as metrics from "./metrics.js";
import { draw } from "./chart.js";
import { bindKeys } from "./keys.js";

const windowMs = 5 * 60 * 1000;
const maxEvents = 200;

const state = { snap: null, selfId: "0", last: null, points: [] };

function banner(text) {
  const el = $("#banner");
  el.hidden = !text;
  el.textContent = text || "";
}

function event(kind, id, text, t = Date.now()) {
  const list = $("#timeline");
  list.prepend(h("li", { dataset: { kind, id } }, h("time", {}, clock(t)), " ", text));
  while (list.children.length > maxEvents) list.lastChild.remove();
}

async function pollMembers() {
  let snap;
  try {
    snap = markJoining(state.snap, normalize(await call("Cluster/Members")));
  } catch (e) {
    banner(`Members: ${e.message}`);
    return;
  }
  banner("");
  if (!state.snap) event("start", "", `page opened: ${snap.members.size} members, leader ${snap.leaderId}`);
  for (const ev of diff(state.snap, snap)) event(ev.kind, ev.id, ev.text);
  state.snap = snap;
  const voters = [...snap.members.values()].filter((m) => m.role === "voter").length;
  $("#members-summary").textContent = `${voters} voters, ${snap.members.size - voters} observers`;
  redraw();
}

function redraw() {
  if (state.snap) members.render($("#members"), state.snap, state.selfId, act);
}

async function pollStatus() {
  try {
    const st = await call("Cluster/Status");
    state.selfId = String(st.id || "0");
    const role = { ROLE_VOTER: "voter", ROLE_OBSERVER: "observer" }[st.role] || "unknown role";
    $("#node").textContent = `node ${state.selfId} · ${role} · ${st.state || "?"} · leader ${st.leaderId || "none"} · term ${st.term || 0} · applied ${st.appliedIndex || 0} · ${st.version || ""}`;
  } catch (e) {
    $("#node").textContent = `this node: ${e.message}`;
  }
}

async function pollMetrics() {
  let text;
  try {
    const resp = await fetch("/metrics", { signal: AbortSignal.timeout(3000) });
    text = await resp.text();
  } catch {
    return;
  }
  const now = Date.now();
  const sample = metrics.counters(metrics.parse(text, metrics.families), now);
  const prev = state.last;
  state.last = sample;
  const r = prev ? metrics.rates(prev, sample) : null;
  state.points.push(r || { t: now, puts: null, gets: null, commitMs: null });
  state.points = state.points.filter((p) => p.t > now - windowMs);
  chart("puts", (p) => p.puts, (v) => `${v.toFixed(1)}/s`, now);
  chart("gets", (p) => p.gets, (v) => `${v.toFixed(1)}/s`, now);
  chart("commit", (p) => p.commitMs, (v) => `${v.toFixed(2)} ms`, now);
}

function chart(name, pick, fmt, now) {
  const pts = state.points.map((p) => ({ t: p.t, v: pick(p) }));
  // The x axis spans the history seen, from one minute up to the window.
  const span = Math.min(windowMs, Math.max(60 * 1000, now - pts[0].t));
  const max = draw($(`#chart-${name}`), pts, now, span);
  const last = pts.at(-1)?.v;
  $(`#${name}-now`).textContent = `now ${last == null ? "–" : fmt(last)} · max ${fmt(max)}`;
}

// act redraws the cards (an armed button was clicked: disarmed now, or a
// stale armed button would send the action again) and runs action, if any.
async function act(action, id) {
  redraw();
  if (!action) return;
  const out = $("#action-result");
  out.className = "result";
  out.textContent = `${action} ${id}…`;
  try {
    await call(`Cluster/${action === "promote" ? "Promote" : "Remove"}`, { id }, { guarded: true, timeoutMs: 15000 });
    out.className = "result ok";
    out.textContent = `${action} ${id}: done`;
  } catch (e) {
    out.className = "result error";
    out.textContent = `${action} ${id}: ${e.message}`;
  }
}

// every runs f now and then a second after each run ends, so a slow node
// never piles up calls.
function every(f) {
  const run = async () => {
    await f();
    setTimeout(run, 1000);
  };
  run();
}

bindSecret($("#secret"));
bindKeys();
every(pollStatus);
every(pollMembers);
every(pollMetrics);
