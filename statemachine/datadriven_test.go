package statemachine

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/cockroachdb/pebble/v2/vfs"
	sm "github.com/lni/dragonboat/v4/statemachine"
)

// TestDataDriven runs the scripts in testdata/. Commands:
//
//	update                      one Update call; each input line is an entry:
//	N: CMD | CMD ...            entry N holding commands; "N:" alone is empty
//	N: !hex HEX                 entry N with raw (usually corrupt) bytes
//	  CMD = [if K=REV ... then] OP; OP ...
//	  OP  = put K V | del K | mput K V | mdel K    (V may be "" for empty)
//	get K [meta] [value-limit=N]
//	range [start=K] [end=K] [prefix=P] [limit=N] [max-bytes=N] [keys-only] [meta]
//	applied | dump | sync
//	restart                     Close and reopen on the same filesystem
//	crash                       reopen on a crash clone keeping no unsynced data
//	snapshot                    save, recover into a fresh state machine, and
//	                            switch to it
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		h := &ddHarness{t: t}
		h.reset()
		datadriven.RunTest(t, path, h.run)
	})
}

type ddHarness struct {
	t   *testing.T
	fs  *vfs.MemFS
	s   *StateMachine
	gen int
}

func (h *ddHarness) dir() string { return fmt.Sprintf("/sm%d", h.gen) }

func (h *ddHarness) reset() {
	h.fs = vfs.NewCrashableMem()
	h.s, _ = openSM(h.t, h.fs, h.dir())
}

func (h *ddHarness) run(t *testing.T, d *datadriven.TestData) string {
	switch d.Cmd {
	case "update":
		return h.update(t, d.Input)
	case "get":
		if len(d.CmdArgs) == 0 {
			t.Fatal("get needs a key")
		}
		q := GetQuery{Key: []byte(d.CmdArgs[0].Key), Meta: d.HasArg("meta")}
		d.MaybeScanArgs(t, "value-limit", &q.ValueLimit)
		r, err := h.s.Lookup(q)
		if err != nil {
			return "error: " + err.Error()
		}
		g := r.(GetResult)
		if g.KV == nil {
			return fmt.Sprintf("%s not found (rev=%d)", q.Key, g.Revision)
		}
		if q.ValueLimit > 0 {
			return fmt.Sprintf("%s size=%d value-omitted=%v (rev=%d)", formatKV(*g.KV, q.Meta), g.ValueSize, g.KV.Value == nil, g.Revision)
		}
		return fmt.Sprintf("%s (rev=%d)", formatKV(*g.KV, q.Meta), g.Revision)
	case "range":
		return h.rangeCmd(t, d)
	case "applied":
		return strconv.FormatUint(mustLookup[uint64](t, h.s, AppliedQuery{}), 10)
	case "dump":
		return dump(t, h.s)
	case "sync":
		if err := h.s.Sync(); err != nil {
			return "error: " + err.Error()
		}
		return "ok"
	case "restart":
		if err := h.s.Close(); err != nil {
			t.Fatal(err)
		}
		s, applied := openSM(t, h.fs, h.dir())
		h.s = s
		return fmt.Sprintf("reopened applied=%d", applied)
	case "crash":
		h.fs = h.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
		s, applied := openSM(t, h.fs, h.dir())
		h.s = s
		return fmt.Sprintf("reopened applied=%d", applied)
	case "snapshot":
		snap := saveSnapshot(t, h.s)
		h.gen++
		s, _ := openSM(t, h.fs, h.dir())
		if err := s.RecoverFromSnapshot(strings.NewReader(string(snap)), nil); err != nil {
			return "error: " + err.Error()
		}
		h.s = s
		return fmt.Sprintf("recovered applied=%d", mustLookup[uint64](t, s, AppliedQuery{}))
	default:
		t.Fatalf("unknown command %q", d.Cmd)
		return ""
	}
}

func (h *ddHarness) update(t *testing.T, input string) string {
	var ents []sm.Entry
	for _, line := range strings.Split(input, "\n") {
		idx, rest, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("entry line %q lacks 'N:'", line)
		}
		index, err := strconv.ParseUint(strings.TrimSpace(idx), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		rest = strings.TrimSpace(rest)
		e := sm.Entry{Index: index}
		switch {
		case rest == "":
		case strings.HasPrefix(rest, "!hex "):
			if e.Cmd, err = hex.DecodeString(strings.TrimPrefix(rest, "!hex ")); err != nil {
				t.Fatal(err)
			}
		default:
			var cmds []Command
			for _, c := range strings.Split(rest, "|") {
				cmds = append(cmds, parseCommand(t, c))
			}
			e.Cmd = EncodeCommands(nil, cmds)
		}
		ents = append(ents, e)
	}
	out, err := h.s.Update(ents)
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	for _, e := range out {
		fmt.Fprintf(&b, "%d: %s\n", e.Index, formatResult(e.Result))
	}
	fmt.Fprintf(&b, "applied=%d", mustLookup[uint64](t, h.s, AppliedQuery{}))
	return b.String()
}

func formatResult(r sm.Result) string {
	switch r.Value {
	case ResultReplayed:
		return "replayed"
	case ResultCorrupt:
		_, err := ParseResult(r)
		return "corrupt: " + err.Error()
	}
	rs, err := ParseResult(r)
	if err != nil {
		return "bad result: " + err.Error()
	}
	if len(rs) == 0 {
		return "no commands"
	}
	parts := []string{}
	for _, x := range rs {
		s := fmt.Sprintf("rev=%d", x.Revision)
		if x.Succeeded {
			s += " ok"
		} else {
			s += fmt.Sprintf(" failed current=%v", x.Current)
		}
		if x.Deleted > 0 {
			s += fmt.Sprintf(" deleted=%d", x.Deleted)
		}
		parts = append(parts, "["+s+"]")
	}
	return strings.Join(parts, " ")
}

// parseCommand parses "[if K=REV ... then] OP; OP ...".
func parseCommand(t *testing.T, s string) Command {
	var c Command
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "if "); ok {
		cond, ops, found := strings.Cut(rest, " then")
		if !found {
			t.Fatalf("%q: 'if' without 'then'", s)
		}
		for _, f := range strings.Fields(cond) {
			k, v, _ := strings.Cut(f, "=")
			rev, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			c.Compares = append(c.Compares, Compare{Key: []byte(k), ModRevision: rev})
		}
		s = ops
	}
	for _, op := range strings.Split(s, ";") {
		f := strings.Fields(op)
		if len(f) == 0 {
			continue
		}
		var o Op
		switch f[0] {
		case "put":
			o.Type = OpPut
		case "del":
			o.Type = OpDelete
		case "mput":
			o.Type = OpMetaPut
		case "mdel":
			o.Type = OpMetaDelete
		default:
			t.Fatalf("unknown op %q", op)
		}
		if len(f) < 2 {
			t.Fatalf("op %q lacks a key", op)
		}
		o.Key = []byte(f[1])
		if o.Type.isPut() {
			if len(f) != 3 {
				t.Fatalf("op %q wants a key and a value", op)
			}
			if f[2] != `""` {
				o.Value = []byte(f[2])
			}
		}
		c.Ops = append(c.Ops, o)
	}
	return c
}

func (h *ddHarness) rangeCmd(t *testing.T, d *datadriven.TestData) string {
	var q RangeQuery
	var start, end, prefix string
	if d.MaybeScanArgs(t, "start", &start) {
		q.Start = []byte(start)
	}
	if d.MaybeScanArgs(t, "end", &end) {
		q.End = []byte(end)
	}
	if d.MaybeScanArgs(t, "prefix", &prefix) {
		q.Start, q.End = []byte(prefix), PrefixEnd([]byte(prefix))
	}
	d.MaybeScanArgs(t, "limit", &q.Limit)
	d.MaybeScanArgs(t, "max-bytes", &q.MaxBytes)
	q.KeysOnly = d.HasArg("keys-only")
	q.Meta = d.HasArg("meta")
	r, err := h.s.Lookup(q)
	if err != nil {
		return "error: " + err.Error()
	}
	rr := r.(RangeResult)
	var b strings.Builder
	for _, kv := range rr.KVs {
		if q.KeysOnly && kv.Value != nil {
			t.Fatalf("keys-only range returned a value for %q", kv.Key)
		}
		fmt.Fprintf(&b, "%s\n", formatKV(kv, q.Meta))
	}
	fmt.Fprintf(&b, "more=%v rev=%d", rr.More, rr.Revision)
	return b.String()
}
