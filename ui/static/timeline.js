// The membership timeline, derived from successive Members snapshots (the
// page polls once a second): a change is seen when two polls differ, and
// one undone between two polls is not seen at all. The node's own events
// stream from Cluster/WatchMembers, and a browser could read them (a
// Connect server stream is a POST whose response body arrives as framed
// JSON messages, over HTTP/1.1 too), but the page does not use it yet: it
// polls Members anyway for what changes without an event (applied index,
// lag, how long a member has been down), and the stream's frames would be
// decoded here by hand.

// normalize turns a MembersResponse (protojson: zero values omitted, 64-bit
// integers as strings) into a snapshot.
export function normalize(resp) {
  const members = new Map();
  for (const m of resp.members || []) {
    const id = String(m.id || "0");
    members.set(id, {
      id,
      role: roleName(m.role),
      state: m.state || "unknown",
      ready: Boolean(m.ready),
      leader: Boolean(m.leader),
      applied: Number(m.appliedIndex || 0),
      lag: Number(m.lag || 0),
      downForMs: Number(m.downForMs || 0),
      reason: m.reason || "",
      apiAddr: m.apiAddr || "",
      raftAddr: m.raftAddr || "",
    });
  }
  return { leaderId: String(resp.leaderId || "0"), members };
}

function roleName(role) {
  switch (role) {
    case "ROLE_VOTER": return "voter";
    case "ROLE_OBSERVER": return "observer";
  }
  return "unknown";
}

// markJoining sets snap.joining: the members still joining, as the page
// saw them. A member the server calls "joining" is one; so is a member that
// appeared after the page opened and has not been ready since (while it
// starts and catches up, the server probes it as unreachable or
// catching-up: for a newcomer that means joining, not down).
export function markJoining(prev, snap) {
  snap.joining = new Set();
  for (const [id, m] of snap.members) {
    const newcomer = prev && (!prev.members.has(id) || prev.joining.has(id));
    if (m.state === "joining" || (newcomer && !m.ready)) snap.joining.add(id);
  }
  return snap;
}

// shownRole is the role the page shows: voter, observer or joining.
export function shownRole(snap, m) {
  return snap.joining.has(m.id) ? "joining" : m.role;
}

const down = new Set(["unreachable", "stalled", "isolated"]);

// diff returns the events between two snapshots marked by markJoining
// (prev null: none), each
// {kind, id, text}; kinds: leader, removed, joined, caught-up, promoted,
// demoted, down (unreachable, stalled, isolated), back, state.
export function diff(prev, cur) {
  if (!prev) return [];
  const out = [];
  if (prev.leaderId !== cur.leaderId) {
    out.push(cur.leaderId === "0"
      ? { kind: "leader", id: prev.leaderId, text: `no leader (was ${prev.leaderId})` }
      : { kind: "leader", id: cur.leaderId, text: `leader changed: ${prev.leaderId === "0" ? "none" : prev.leaderId} → ${cur.leaderId}` });
  }
  for (const [id, m] of prev.members) {
    if (!cur.members.has(id)) out.push({ kind: "removed", id, text: `${id} removed (was ${m.role})` });
  }
  for (const [id, m] of cur.members) {
    const p = prev.members.get(id);
    if (!p) {
      out.push({ kind: "joined", id, text: `${id} joined as ${m.role}${m.ready ? "" : ", catching up"}` });
      if (m.ready) out.push({ kind: "caught-up", id, text: `${id} caught up` });
      continue;
    }
    out.push(...(prev.joining.has(id) ? joinerChanges(p, m) : memberChanges(p, m)));
  }
  return out;
}

function joinerChanges(p, m) {
  const id = m.id;
  if (m.ready) return [{ kind: "caught-up", id, text: `${id} caught up as ${m.role}` }];
  if (m.state === p.state) return [];
  return [{ kind: "state", id, text: `${id} joining: ${m.state}${m.reason ? ` (${m.reason})` : ""}` }];
}

function memberChanges(p, m) {
  const out = [];
  const id = m.id;
  if (p.role === "observer" && m.role === "voter") out.push({ kind: "promoted", id, text: `${id} promoted to voter` });
  if (p.role === "voter" && m.role === "observer") out.push({ kind: "demoted", id, text: `${id} demoted to observer` });
  if (m.state === p.state) return out;
  if (down.has(m.state)) {
    out.push({ kind: "down", id, text: `${id} ${m.state}${m.reason ? `: ${m.reason}` : ""}` });
  } else if (down.has(p.state) && m.ready) {
    out.push({ kind: "back", id, text: `${id} back (${m.state})` });
  } else if (!p.ready && m.ready) {
    out.push({ kind: "caught-up", id, text: `${id} caught up` });
  } else {
    out.push({ kind: "state", id, text: `${id} ${p.state} → ${m.state}` });
  }
  return out;
}
