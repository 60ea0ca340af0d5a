package node

import (
	"testing"

	"github.com/kvd-project/kvd/statemachine"
)

func TestEarliestClusterID(t *testing.T) {
	kv := func(id string, create uint64) statemachine.KeyValue {
		return statemachine.KeyValue{Key: []byte(metaClusterPrefix + id), CreateRevision: create}
	}
	for _, tc := range []struct {
		name string
		kvs  []statemachine.KeyValue
		want string
	}{
		{"none", nil, ""},
		{"one", []statemachine.KeyValue{kv("aa", 7)}, "aa"},
		// Keys come sorted; the first written wins, not the lowest key.
		{"two leaders raced", []statemachine.KeyValue{kv("0f", 12), kv("ff", 9)}, "ff"},
	} {
		if got := earliestClusterID(tc.kvs); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
