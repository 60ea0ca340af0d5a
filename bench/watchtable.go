package main

import (
	"fmt"
	"strings"

	"github.com/kvd-project/kvd/bench/load"
)

// writeWatchTable adds, when runs (medians) include watchers, one row per
// kvd run with watchers: its puts/s against the same load without
// watchers, the events delivered and their latencies, and etcd's figures
// for the same load and watcher count.
func writeWatchTable(b *strings.Builder, runs []*load.Result, markdown bool) {
	byKey := map[string]*load.Result{}
	var watched []*load.Result
	for _, r := range runs {
		byKey[r.Mode+"/"+workloadKey(r)] = r
		if r.Mode == "kvd" && r.Watchers > 0 && r.Transport == transportHTTP1 {
			watched = append(watched, r)
		}
	}
	if len(watched) == 0 {
		return
	}
	rows := [][]string{{"clients", "watchers", "kvd puts/s", "vs none", "events/s", "ack→event p50", "p99", "sent→event p50",
		"etcd puts/s", "vs none", "events/s", "ack→event p50", "p99", "sent→event p50"}}
	for _, r := range watched {
		row := append([]string{fmt.Sprint(r.Clients), watchersLabel(r)}, watchCells(r, byKey)...)
		// etcd has no observers that serve clients: its watchers are on
		// all members, beside both kvd rows.
		etcdKey := strings.TrimSuffix(workloadKey(r), watchKey(r)) + fmt.Sprintf("/watch%d@all", r.Watchers)
		if e := byKey["etcd/"+etcdKey]; e != nil {
			row = append(row, watchCells(e, byKey)...)
		} else {
			row = append(row, "–", "–", "–", "–", "–", "–")
		}
		rows = append(rows, row)
	}
	b.WriteString("\n")
	printRows(b, rows, markdown)
	if markdown {
		b.WriteString("\n")
	}
	b.WriteString("watch: puts/s vs the same load without watchers; events/s over all watchers; ack→event from the put's answer to the event at a watcher (negative: the event came first), sent→event from sending the put\n")
}

func watchersLabel(r *load.Result) string {
	if r.WatchOn == "observers" {
		return fmt.Sprintf("%d on observers", r.Watchers)
	}
	return fmt.Sprintf("%d on all", r.Watchers)
}

// watchCells: puts/s, the ratio to the run without watchers, events/s and
// the latencies of r.
func watchCells(r *load.Result, byKey map[string]*load.Result) []string {
	vs := "–"
	base := workloadKey(r)
	if none := byKey[r.Mode+"/"+strings.TrimSuffix(base, watchKey(r))]; none != nil {
		vs = ratio(r.OpsPerSec, none.OpsPerSec)
	}
	return []string{fmt.Sprintf("%.0f", r.OpsPerSec), vs, fmt.Sprintf("%.0f", r.WatchEventsPerSec),
		load.FormatMs(r.WatchP50Ms), load.FormatMs(r.WatchP99Ms), load.FormatMs(r.WatchSentP50Ms)}
}
