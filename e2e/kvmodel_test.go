package e2e

import (
	"fmt"
	"hash/fnv"
	"sort"
	"testing"

	"github.com/anishathalye/porcupine"
)

// The sequential specification the fault suite checks histories against:
// one register per key holding (value, mod revision), partitioned by key.
//
// Revisions are Raft indexes, so they are cluster-wide and only grow: a write
// linearized after another write to the same key must carry a larger
// revision. Every put writes a value no other operation writes, so a value
// names the one write that produced it.
//
// A write whose outcome is unknown (timeout, broken connection) may or may
// not have taken effect, so its step has two outcomes: applied, or nothing
// (which is the same as linearizing it after everything else, where nobody
// can observe it). If some read observed its value, the revision it carried
// is known (outRev); if not, the register records only a lower bound on its
// revision (revKnown = false). The nondeterministic model is turned into a
// deterministic one by porcupine's power-set construction.

type opKind uint8

const (
	opGet opKind = iota
	opPut
	opCAS
)

// kvInput is what a client asked.
type kvInput struct {
	Kind   opKind
	Key    string
	Value  string // put, cas
	Expect uint64 // cas: expected mod revision, 0 = the key must not exist
	Txn    bool   // cas: sent as a Txn (compare + put) rather than a Put with if_mod_revision
}

// kvOutput is what a client was told.
type kvOutput struct {
	// Unknown: a write whose outcome the client cannot know. Rev is then the
	// revision a read observed its value with, or 0 if no read did.
	Unknown bool
	// Get: Found, Value and Rev (the mod revision). Put and a CAS that held:
	// Rev is the write's revision.
	Found bool
	Value string
	Rev   uint64
	// CAS that did not hold: CompareFailed, and Current is the key's mod
	// revision the server reported (0 = absent) when CurrentKnown.
	CompareFailed bool
	Current       uint64
	CurrentKnown  bool
}

// kvState is one key's register. When RevKnown is false the value was
// written by a write whose revision nobody observed: its mod revision is
// some number above Rev.
type kvState struct {
	Exists   bool
	Value    string
	Rev      uint64
	RevKnown bool
}

// revCouldBe reports whether the key's mod revision could be r.
func (s kvState) revCouldBe(r uint64) bool {
	if !s.Exists {
		return r == 0
	}
	if s.RevKnown {
		return s.Rev == r
	}
	return r > s.Rev
}

// compareCouldHold reports whether a compare against expect could hold.
func (s kvState) compareCouldHold(expect uint64) bool {
	if expect == 0 {
		return !s.Exists
	}
	return s.Exists && s.revCouldBe(expect)
}

// written is the state after a write of value at revision rev (0 =
// unknown, above the current one).
func (s kvState) written(value string, rev uint64) kvState {
	if rev != 0 {
		return kvState{Exists: true, Value: value, Rev: rev, RevKnown: true}
	}
	return kvState{Exists: true, Value: value, Rev: s.Rev, RevKnown: false}
}

// kvStep is the nondeterministic step: every state the key can be in after
// the operation, none if the operation could not have returned its output.
func kvStep(state, input, output interface{}) []interface{} {
	s, in, out := state.(kvState), input.(kvInput), output.(kvOutput)
	// A write's revision is above the key's current one (Raft indexes
	// grow). With an unknown current revision, above its lower bound.
	newer := func(rev uint64) bool { return rev > s.Rev }
	switch in.Kind {
	case opGet:
		if !out.Found {
			if s.Exists {
				return nil
			}
			return []interface{}{s}
		}
		if !s.Exists || s.Value != out.Value || !s.revCouldBe(out.Rev) {
			return nil
		}
		return []interface{}{kvState{Exists: true, Value: s.Value, Rev: out.Rev, RevKnown: true}}

	case opPut:
		if out.Unknown {
			next := []interface{}{s} // not applied
			if out.Rev == 0 || newer(out.Rev) {
				next = append(next, s.written(in.Value, out.Rev))
			}
			return next
		}
		if !newer(out.Rev) {
			return nil
		}
		return []interface{}{s.written(in.Value, out.Rev)}

	case opCAS:
		switch {
		case out.Unknown:
			next := []interface{}{s} // not applied, or the compare failed
			if s.compareCouldHold(in.Expect) && (out.Rev == 0 || (newer(out.Rev) && out.Rev > in.Expect)) {
				w := s.written(in.Value, out.Rev)
				if out.Rev == 0 && in.Expect > w.Rev {
					w.Rev = in.Expect // the CAS held, so the old revision was Expect
				}
				next = append(next, w)
			}
			return next
		case out.CompareFailed:
			if in.Expect == 0 && !s.Exists {
				return nil // the compare held
			}
			if in.Expect != 0 && s.Exists && s.RevKnown && s.Rev == in.Expect {
				return nil // the compare held
			}
			if !out.CurrentKnown {
				return []interface{}{s}
			}
			if out.Current == in.Expect || !s.revCouldBe(out.Current) {
				return nil
			}
			if out.Current == 0 {
				return []interface{}{s}
			}
			return []interface{}{kvState{Exists: true, Value: s.Value, Rev: out.Current, RevKnown: true}}
		default:
			if !s.compareCouldHold(in.Expect) || !newer(out.Rev) || out.Rev <= in.Expect {
				return nil
			}
			return []interface{}{s.written(in.Value, out.Rev)}
		}
	}
	panic(fmt.Sprintf("kvmodel: unknown op kind %d", in.Kind))
}

// kvModel is the porcupine model of kvd's KV API on single keys.
var kvModel = (&porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(kvInput).Key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() []interface{} { return []interface{}{kvState{RevKnown: true}} },
	Step: kvStep,
	Hash: func(state interface{}) uint64 {
		s := state.(kvState)
		h := fnv.New64a()
		fmt.Fprintf(h, "%v|%s|%d|%v", s.Exists, s.Value, s.Rev, s.RevKnown)
		return h.Sum64()
	},
	DescribeOperation: describeOp,
	DescribeState: func(state interface{}) string {
		s := state.(kvState)
		switch {
		case !s.Exists:
			return "absent"
		case s.RevKnown:
			return fmt.Sprintf("%s@%d", s.Value, s.Rev)
		}
		return fmt.Sprintf("%s@>%d", s.Value, s.Rev)
	},
}).ToModel()

func describeOp(input, output interface{}) string {
	in, out := input.(kvInput), output.(kvOutput)
	var call string
	switch in.Kind {
	case opGet:
		call = fmt.Sprintf("get(%s)", in.Key)
	case opPut:
		call = fmt.Sprintf("put(%s, %s)", in.Key, in.Value)
	case opCAS:
		call = fmt.Sprintf("cas(%s, %s, if @%d)", in.Key, in.Value, in.Expect)
		if in.Txn {
			call = "txn-" + call
		}
	}
	switch {
	case out.Unknown && out.Rev != 0:
		return fmt.Sprintf("%s → ? (value seen @%d)", call, out.Rev)
	case out.Unknown:
		return call + " → ?"
	case in.Kind == opGet && !out.Found:
		return call + " → not found"
	case in.Kind == opGet:
		return fmt.Sprintf("%s → %s@%d", call, out.Value, out.Rev)
	case out.CompareFailed && out.CurrentKnown:
		return fmt.Sprintf("%s → compare failed (current @%d)", call, out.Current)
	case out.CompareFailed:
		return call + " → compare failed"
	}
	return fmt.Sprintf("%s → @%d", call, out.Rev)
}

// The model must reject what kvd must never do, and accept what it may do.
// Each history is a list of ops with [call, return] times; ret < 0 means
// the outcome is unknown (the op never returned).
func TestKVModel(t *testing.T) {
	type op struct {
		call, ret int64
		in        kvInput
		out       kvOutput
	}
	put := func(v string) kvInput { return kvInput{Kind: opPut, Key: "k", Value: v} }
	cas := func(v string, expect uint64) kvInput { return kvInput{Kind: opCAS, Key: "k", Value: v, Expect: expect} }
	found := func(v string, rev uint64) kvOutput { return kvOutput{Found: true, Value: v, Rev: rev} }
	at := func(rev uint64) kvOutput { return kvOutput{Rev: rev} }
	failed := func(cur uint64) kvOutput { return kvOutput{CompareFailed: true, Current: cur, CurrentKnown: true} }
	unknown := func(seenAt uint64) kvOutput { return kvOutput{Unknown: true, Rev: seenAt} }
	g := kvInput{Kind: opGet, Key: "k"}
	for _, tc := range []struct {
		name string
		ok   bool
		ops  []op
	}{
		{"read of an absent key", true, []op{{0, 1, g, kvOutput{}}}},
		{"read of a value never written", false, []op{{0, 1, g, found("a", 5)}}},
		{"read after a put", true, []op{{0, 1, put("a"), at(5)}, {2, 3, g, found("a", 5)}}},
		{"read with the wrong revision", false, []op{{0, 1, put("a"), at(5)}, {2, 3, g, found("a", 6)}}},
		{"not found after an acknowledged put", false, []op{{0, 1, put("a"), at(5)}, {2, 3, g, kvOutput{}}}},
		{"stale read after an acknowledged overwrite", false, []op{
			{0, 1, put("a"), at(5)}, {2, 3, put("b"), at(7)}, {4, 5, g, found("a", 5)}}},
		{"concurrent read may see either", true, []op{
			{0, 1, put("a"), at(5)}, {2, 6, put("b"), at(7)}, {3, 4, g, found("a", 5)}}},
		{"reads going back in time", false, []op{
			{0, 1, put("a"), at(5)}, {2, 10, put("b"), at(7)}, {3, 4, g, found("b", 7)}, {5, 6, g, found("a", 5)}}},
		{"revisions going backwards", false, []op{{0, 1, put("a"), at(9)}, {2, 3, put("b"), at(7)}}},
		{"cas that held", true, []op{{0, 1, put("a"), at(5)}, {2, 3, cas("b", 5), at(8)}, {4, 5, g, found("b", 8)}}},
		{"cas create on an absent key", true, []op{{0, 1, cas("a", 0), at(3)}, {2, 3, g, found("a", 3)}}},
		{"cas create on an existing key", false, []op{{0, 1, put("a"), at(3)}, {2, 3, cas("b", 0), at(4)}}},
		{"cas held against a stale revision", false, []op{
			{0, 1, put("a"), at(5)}, {2, 3, put("b"), at(6)}, {4, 5, cas("c", 5), at(9)}}},
		{"cas failed although it should hold", false, []op{{0, 1, put("a"), at(5)}, {2, 3, cas("b", 5), failed(5)}}},
		{"cas failed naming the wrong current revision", false, []op{
			{0, 1, put("a"), at(5)}, {2, 3, cas("b", 4), failed(6)}}},
		{"cas failed with the current revision", true, []op{
			{0, 1, put("a"), at(5)}, {2, 3, cas("b", 4), failed(5)}}},
		{"cas failed on an absent key", true, []op{{0, 1, cas("b", 4), failed(0)}}},
		{"two cas from the same revision both held (lost update)", false, []op{
			{0, 1, put("a"), at(5)}, {2, 6, cas("b", 5), at(8)}, {3, 7, cas("c", 5), at(9)}}},
		{"unknown put never seen", true, []op{
			{0, 1, put("a"), at(5)}, {2, -1, put("x"), unknown(0)}, {3, 4, g, found("a", 5)}}},
		{"unknown put seen later", true, []op{
			{0, 1, put("a"), at(5)}, {2, -1, put("x"), unknown(6)}, {3, 4, g, found("x", 6)}, {5, 6, g, found("x", 6)}}},
		{"unknown put seen, then its effect undone", false, []op{
			{0, 1, put("a"), at(5)}, {2, -1, put("x"), unknown(6)}, {3, 4, g, found("x", 6)}, {5, 6, g, found("a", 5)}}},
		{"unknown put seen before it was called", false, []op{
			{0, 1, put("a"), at(5)}, {2, 3, g, found("x", 6)}, {4, -1, put("x"), unknown(6)}}},
		{"cas against an unknown put's revision learnt from a failed cas", true, []op{
			{0, 1, put("a"), at(5)}, {2, -1, put("x"), unknown(0)}, {3, 4, cas("b", 5), failed(7)},
			{5, 6, cas("c", 7), at(9)}, {7, 8, g, found("c", 9)}}},
		{"unknown cas applied", true, []op{
			{0, 1, put("a"), at(5)}, {2, -1, cas("x", 5), unknown(7)}, {3, 4, g, found("x", 7)}}},
		{"unknown cas that could not hold was seen", false, []op{
			{0, 1, put("a"), at(5)}, {2, -1, cas("x", 4), unknown(7)}, {3, 4, g, found("x", 7)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hist []porcupine.Operation
			for i, o := range tc.ops {
				ret := o.ret
				if ret < 0 {
					ret = 1000
				}
				hist = append(hist, porcupine.Operation{ClientId: i, Input: o.in, Call: o.call, Output: o.out, Return: ret})
			}
			if got := porcupine.CheckOperations(kvModel, hist); got != tc.ok {
				t.Fatalf("linearizable = %v, want %v", got, tc.ok)
			}
		})
	}
}
