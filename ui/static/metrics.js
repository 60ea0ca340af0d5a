// Traffic from the node's /metrics (Prometheus text format): counters are
// sampled once a second and turned into rates between samples.

// parse returns the samples of the metric families named in want, as
// {name, labels, value} (histogram series keep their _bucket/_sum/_count
// names).
export function parse(text, want) {
  const out = [];
  for (const line of text.split("\n")) {
    if (line === "" || line[0] === "#") continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || !want.some((w) => m[1].startsWith(w))) continue;
    out.push({ name: m[1], labels: parseLabels(m[2] || ""), value: Number(m[3]) });
  }
  return out;
}

function parseLabels(s) {
  const labels = {};
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  let m;
  while ((m = re.exec(s)) !== null) labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
  return labels;
}

const sum = (series, pred) => series.filter(pred).reduce((a, s) => a + s.value, 0);

// counters extracts the totals the charts need from parsed series.
export function counters(series, t) {
  // A unary call, or one call of that kind inside a KV stream.
  const rpc = (proc, call) => (s) => s.name === "kvd_rpc_requests_total" &&
    (s.labels.procedure === proc || (s.labels.procedure === "/kvd.v1.KV/Stream" && s.labels.call === call));
  return {
    t,
    puts: sum(series, rpc("/kvd.v1.KV/Put", "put")),
    gets: sum(series, rpc("/kvd.v1.KV/Get", "get")),
    commitSum: sum(series, (s) => s.name === "kvd_node_propose_duration_seconds_sum"),
    commitCount: sum(series, (s) => s.name === "kvd_node_propose_duration_seconds_count"),
  };
}

export const families = ["kvd_rpc_requests_total", "kvd_node_propose_duration_seconds"];

// rates turns two successive counter samples into per-second rates and the
// mean commit latency (ms) of the proposals between them (null: none).
// A counter that went down (the node restarted) yields no point.
export function rates(a, b) {
  const dt = (b.t - a.t) / 1000;
  if (dt <= 0 || b.puts < a.puts || b.gets < a.gets || b.commitCount < a.commitCount) return null;
  const n = b.commitCount - a.commitCount;
  return {
    t: b.t,
    puts: (b.puts - a.puts) / dt,
    gets: (b.gets - a.gets) / dt,
    commitMs: n > 0 ? ((b.commitSum - a.commitSum) / n) * 1000 : null,
  };
}
