package load

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// WritePlot writes a self-contained HTML page (inline SVG, no scripts, no
// external assets) with two charts over time, one line per result:
// throughput per second, and p50 (solid) and p99 (dashed) latency per
// second.
func WritePlot(w io.Writer, title string, results []*Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>%[1]s</title>
<style>body{font:14px sans-serif;margin:2em}svg{display:block;margin:1em 0}
text{font:12px sans-serif}.axis{stroke:#888}.grid{stroke:#eee}</style></head>
<body><h2>%[1]s</h2>
`, html.EscapeString(title))
	for _, r := range results {
		fmt.Fprintf(&b, "<p>%s: %.0f ops/s, p50 %s ms, p99 %s ms, max %s ms, %d errors</p>\n",
			html.EscapeString(Label(r)), r.OpsPerSec, FormatMs(r.P50Ms), FormatMs(r.P99Ms), FormatMs(r.MaxMs), r.Errors)
	}
	var tput, lat []line
	for i, r := range results {
		color := palette[i%len(palette)]
		var ops, p50, p99 []float64
		for _, s := range r.Series {
			ops = append(ops, s.OpsPerSec)
			p50 = append(p50, s.P50Ms)
			p99 = append(p99, s.P99Ms)
		}
		tput = append(tput, line{label: Label(r), color: color, ys: ops})
		lat = append(lat,
			line{label: Label(r) + " p50", color: color, ys: p50},
			line{label: Label(r) + " p99", color: color, ys: p99, dashed: true})
	}
	chart(&b, "throughput (ops/s per second)", tput)
	chart(&b, "latency (ms, per second)", lat)
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// Label names a result in one line, e.g. "kvd put 64 clients (connect over http1)".
func Label(r *Result) string {
	s := fmt.Sprintf("%s %s %d clients", r.Mode, r.Op, r.Clients)
	if r.Protocol != "" || r.Transport != "" {
		s += " (" + strings.TrimSpace(r.Protocol+" "+r.Transport) + ")"
	}
	return s
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

type line struct {
	label  string
	color  string
	ys     []float64 // one point per second
	dashed bool
}

const (
	plotW, plotH = 860, 300
	padL, padR   = 70, 20
	padT, padB   = 30, 40
)

func chart(b *strings.Builder, title string, lines []line) {
	n, top := 1, 0.0
	for _, l := range lines {
		n = max(n, len(l.ys))
		for _, y := range l.ys {
			top = math.Max(top, y)
		}
	}
	step := niceStep(top / 5)
	top = math.Max(step, math.Ceil(top/step)*step)
	x := func(i int) float64 {
		if n == 1 {
			return padL
		}
		return padL + float64(i)*float64(plotW-padL-padR)/float64(n-1)
	}
	y := func(v float64) float64 { return float64(plotH-padB) - v/top*float64(plotH-padT-padB) }

	legendH := 18 * len(lines)
	fmt.Fprintf(b, `<svg width="%d" height="%d" xmlns="http://www.w3.org/2000/svg">`+"\n", plotW, plotH+legendH)
	fmt.Fprintf(b, `<text x="%d" y="18" font-weight="bold">%s</text>`+"\n", padL, html.EscapeString(title))
	for v := 0.0; v <= top*1.0001; v += step {
		fmt.Fprintf(b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>`, padL, plotW-padR, y(v), y(v))
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", padL-6, y(v)+4, tick(v))
	}
	xStep := max(1, int(niceStep(float64(n)/10)))
	for i := 0; i < n; i += xStep {
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`, x(i), plotH-padB+16, i)
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">seconds</text>`+"\n", (plotW+padL)/2, plotH-6)
	fmt.Fprintf(b, `<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>`, padL, plotW-padR, plotH-padB, plotH-padB)
	fmt.Fprintf(b, `<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>`+"\n", padL, padL, padT, plotH-padB)
	for i, l := range lines {
		dash := ""
		if l.dashed {
			dash = ` stroke-dasharray="6,4"`
		}
		var pts strings.Builder
		for j, v := range l.ys {
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(j), y(v))
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="1.5"%s points="%s"/>`+"\n", l.color, dash, pts.String())
		ly := plotH + 14 + 18*i
		fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`, padL, padL+30, ly-4, ly-4, l.color, dash)
		fmt.Fprintf(b, `<text x="%d" y="%d">%s</text>`+"\n", padL+38, ly, html.EscapeString(l.label))
	}
	b.WriteString("</svg>\n")
}

// niceStep rounds v up to 1, 2 or 5 times a power of ten; fractions stay
// fractions (sub-millisecond latencies).
func niceStep(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func tick(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%gk", v/1000)
	case v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2g", v)
}
