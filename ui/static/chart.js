// Line charts of the last minutes as SVG polylines.

import { h } from "./dom.js";

// draw plots points [{t, v}] (v null: a gap) over the window ending at now.
export function draw(svg, points, now, windowMs) {
  const w = 300, ht = 80;
  const vals = points.filter((p) => p.v !== null).map((p) => p.v);
  const max = Math.max(1e-9, ...vals) * 1.1;
  const lines = [];
  let cur = [];
  for (const p of points) {
    if (p.v === null) {
      if (cur.length) lines.push(cur);
      cur = [];
      continue;
    }
    const x = w - ((now - p.t) / windowMs) * w;
    const y = ht - (p.v / max) * (ht - 4);
    cur.push(`${x.toFixed(1)},${y.toFixed(1)}`);
  }
  if (cur.length) lines.push(cur);
  svg.replaceChildren(
    h("line", { x1: 0, y1: ht - 0.5, x2: w, y2: ht - 0.5, class: "axis" }),
    ...lines.map((l) => h("polyline", { points: l.join(" "), "vector-effect": "non-scaling-stroke" })));
  return vals.length ? Math.max(...vals) : 0;
}
