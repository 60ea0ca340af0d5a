package membership

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

const cacheFile = "membership.txt"

// WriteCache writes the human-readable membership cache file: a diagnostic
// for operators and start-up logs, never the authority (the Raft state is).
func WriteCache(dir string, self ReplicaID, m Membership, apiAddrs map[ReplicaID]string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# kvd membership as seen by replica %d at %s (a cache; Raft is the authority)\n",
		self, time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "config_change_id %d\n", m.ConfigChangeID)
	type row struct {
		id         ReplicaID
		role, addr string
	}
	var rows []row
	for id, a := range m.Voters {
		rows = append(rows, row{id, "voter", a})
	}
	for id, a := range m.Observers {
		rows = append(rows, row{id, "observer", a})
	}
	for id := range m.Removed {
		rows = append(rows, row{id, "removed", ""})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].id < rows[j].id })
	for _, r := range rows {
		mark := ""
		if r.id == self {
			mark = " (self)"
		}
		fmt.Fprintf(&b, "%-20d %-8s raft=%s api=%s%s\n", r.id, r.role, r.addr, apiAddrs[r.id], mark)
	}
	return WriteFileAtomic(dir, cacheFile, []byte(b.String()))
}
