package load

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteJSON writes res as one JSON object on one line.
func WriteJSON(w io.Writer, res *Result) error {
	return json.NewEncoder(w).Encode(res)
}

// WriteSummary writes res for a human: what ran, throughput, errors and the
// latency distribution.
func WriteSummary(w io.Writer, res *Result) error {
	var b strings.Builder
	what := res.Mode
	switch {
	case res.Protocol != "" && res.Transport != "":
		what += " (" + res.Protocol + " over " + res.Transport + ")"
	case res.Protocol != "" || res.Transport != "":
		what += " (" + res.Protocol + res.Transport + ")"
	}
	op := res.Op
	if op == "mixed" {
		op = fmt.Sprintf("mixed %.0f%% gets", res.ReadRatio*100)
	}
	if res.ReadRatio > 0 && res.Consistency != "" {
		op += ", " + res.Consistency
	}
	fmt.Fprintf(&b, "%s %s: %d clients, %d-byte keys, %d-byte values, %d keys %s",
		what, op, res.Clients, res.KeySize, res.ValueSize, res.Keyspace, res.KeyDist)
	if res.Target != "" {
		fmt.Fprintf(&b, ", %s", res.Target)
	}
	fmt.Fprintf(&b, "\n  measured   %.1f s after %.1f s warmup\n", res.DurationS, res.WarmupS)
	fmt.Fprintf(&b, "  throughput %.0f ops/s  (%d ops, %d errors", res.OpsPerSec, res.Ops, res.Errors)
	if res.NotFound > 0 {
		fmt.Fprintf(&b, ", %d not found", res.NotFound)
	}
	b.WriteString(")\n")
	fmt.Fprintf(&b, "  latency    p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %s ms  (%s: every call kept)\n",
		FormatMs(res.P50Ms), FormatMs(res.P90Ms), FormatMs(res.P99Ms), FormatMs(res.P999Ms), FormatMs(res.MaxMs), FormatMs(res.MeanMs), res.Percentiles)
	if res.Watchers > 0 {
		fmt.Fprintf(&b, "  watch      %d watchers on %s: %.0f events/s; ack → event p50 %s  p99 %s  max %s ms (%d events came before the ack); put sent → event p50 %s  p99 %s ms; %d missed\n",
			res.Watchers, res.WatchOn, res.WatchEventsPerSec, FormatMs(res.WatchP50Ms), FormatMs(res.WatchP99Ms), FormatMs(res.WatchMaxMs),
			res.WatchBeforeAck, FormatMs(res.WatchSentP50Ms), FormatMs(res.WatchSentP99Ms), res.WatchMissed)
	}
	if res.FirstError != "" {
		fmt.Fprintf(&b, "  first error: %s\n", res.FirstError)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// FormatMs prints milliseconds with 3 significant digits or more (at
// least 3 decimals below 1 ms).
func FormatMs(v float64) string {
	if v < 0 {
		return "-" + FormatMs(-v)
	}
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}
