// Member cards, and the two guarded actions on them (promote, remove),
// each confirmed by a second click.

import { h, duration } from "./dom.js";
import { shownRole } from "./timeline.js";

let pending = null; // {action, id, until}: first click seen, awaiting the second
const drawn = new WeakMap(); // card → what it was drawn from

// render draws the cards of snapshot snap into el, keeping cards whose
// content did not change. selfId is the node serving the page.
export function render(el, snap, selfId, act) {
  const leaderApplied = snap.members.get(snap.leaderId)?.applied || 0;
  const keep = new Map([...el.children].map((c) => [c.dataset.id, c]));
  const cards = [...snap.members.values()].map((m) => {
    const role = shownRole(snap, m);
    const sig = JSON.stringify([m, role, selfId, leaderApplied, pendingFor(m.id)]);
    const old = keep.get(m.id);
    if (old && drawn.get(old) === sig) return old;
    const card = memberCard(m, role, selfId, leaderApplied, act);
    drawn.set(card, sig);
    return card;
  });
  el.replaceChildren(...cards);
}

function pendingFor(id) {
  return pending && pending.id === id && pending.until > Date.now() ? pending.action : "";
}

function memberCard(m, role, selfId, leaderApplied, act) {
  const applied = leaderApplied ? Math.min(1, m.applied / leaderApplied) : m.ready ? 1 : 0;
  const bar = h("span");
  bar.style.width = `${Math.round(applied * 100)}%`;
  const look = role === "joining" ? "joining" : m.state; // a joiner is not yet down
  return h("article", { class: `member role-${role} state-${look}`, dataset: { id: m.id, role, state: m.state } },
    h("header", {},
      h("span", { class: "id" }, m.id),
      h("span", { class: `badge ${role}` }, role),
      m.leader && h("span", { class: "badge leader" }, "★ leader"),
      m.id === selfId && h("span", { class: "badge self" }, "this node")),
    h("p", { class: "state" }, stateText(m, role)),
    h("div", { class: "progress", title: `applied ${m.applied} of the leader's ${leaderApplied}` }, bar),
    h("p", { class: "muted" }, `applied ${m.applied}${m.lag ? ` · ${m.lag} behind` : ""}`),
    m.reason && h("p", { class: "reason" }, m.reason),
    h("p", { class: "addr" }, h("span", {}, "api ", addrLink(m.apiAddr)), " ", h("span", {}, `raft ${m.raftAddr}`)),
    h("p", { class: "actions" },
      m.role === "observer" && button("promote", m.id, act),
      button("remove", m.id, act)));
}

function stateText(m, role) {
  if (role === "joining") return `joined, catching up (${m.state})`;
  if (m.downForMs > 0) return `${m.state} · down for ${duration(m.downForMs)}`;
  return m.state;
}

function addrLink(addr) {
  if (!addr) return h("span", { class: "muted" }, "no API address yet");
  return h("a", { href: `${location.protocol}//${addr}/ui/` }, addr);
}

function button(action, id, act) {
  const armed = pendingFor(id) === action;
  return h("button", {
    type: "button", class: armed ? "danger" : "", dataset: { action },
    onclick: () => {
      if (!armed) {
        pending = { action, id, until: Date.now() + 5000 };
        act(null);
        return;
      }
      pending = null;
      act(action, id);
    },
  }, armed ? `Confirm ${action} ${id}` : action === "promote" ? "Promote" : "Remove");
}
