package membership

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// tracker probes every member's API for its status, so that this node can
// publish a view with liveness (only the leader's view is acted upon). A
// member is live while its API answers and it follows the leader's log
// (Policy.Following): a voter cut off on its Raft port only still answers,
// but stops following, and so goes down like one that does not answer.
type tracker struct {
	host   Host
	dialer PeerDialer
	policy Policy

	mu     sync.Mutex
	ms     Membership
	msOK   bool
	ccAt   time.Time // when the config-change ID last changed in this view
	metas  map[ReplicaID]Meta
	peers  map[ReplicaID]*peer
	reason func(ready bool) string // this node's own explanation (Controller.Reason)
	// leaderApplied is the leader's applied index as the last probe found
	// it (leaderAppliedOf); 0 = unknown.
	leaderApplied uint64
}

type peer struct {
	firstSeen time.Time
	lastLive  time.Time // last probe that found it live
	liveSince time.Time // start of its current live streak; zero = not live
	st        PeerStatus
	err       string // why it is not live
	ok        bool   // its API answered the last probe
	following bool
}

func newTracker(h Host, d PeerDialer, p Policy, reason func(ready bool) string) *tracker {
	return &tracker{host: h, dialer: d, policy: p, peers: map[ReplicaID]*peer{}, reason: reason}
}

// probe refreshes the membership, the metadata and every peer's status.
// It reports whether the membership's config-change ID moved.
func (t *tracker) probe(ctx context.Context, timeout time.Duration) (changed bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	ms, err := t.host.Membership(cctx)
	cancel()
	if err != nil {
		return false, err
	}
	metas, err := t.host.Metas(ctx)
	if err != nil {
		return false, err
	}
	// The leader's applied index is read before the peers are asked, so
	// that a healthy peer's answer is not behind it by the probe's time.
	local := t.host.Local()
	now := time.Now()
	answers := t.askPeers(ctx, ms, metas, timeout)
	leaderApplied := leaderAppliedOf(t.host.ID(), local, answers)

	t.mu.Lock()
	defer t.mu.Unlock()
	changed = !t.msOK || ms.ConfigChangeID != t.ms.ConfigChangeID
	if changed {
		t.ccAt = now
	}
	t.ms, t.msOK, t.metas, t.leaderApplied = ms, true, metas, leaderApplied
	t.syncPeers(ms, now)
	for _, a := range answers {
		t.peers[a.id].judge(t.policy, a, leaderApplied, now)
	}
	return changed, nil
}

// joining reports whether, as of the last probe, an observer (a node
// joins as one) is on its way in: it has not published its API address
// yet, or its API answers but it is not ready (catching up). The leader then
// probes more often, so that its view (kvctl members, a joiner's
// promotion) follows the join closely. Voters never count: probing every
// 100 ms while one is down made the fault suite's failovers slower.
func (t *tracker) joining() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.msOK {
		return false
	}
	for id := range t.ms.Observers {
		if t.metas[id].APIAddr == "" {
			return true
		}
		if p := t.peers[id]; p != nil && p.ok && !p.st.Ready {
			return true
		}
	}
	return false
}

// answer is one peer's answer to a probe.
type answer struct {
	id  ReplicaID
	st  PeerStatus
	err error
}

// askPeers asks every other member with a published API address for its
// status, all at once.
func (t *tracker) askPeers(ctx context.Context, ms Membership, metas map[ReplicaID]Meta, timeout time.Duration) []answer {
	var out []answer
	for id := range allMembers(ms) {
		if id != t.host.ID() && metas[id].APIAddr != "" {
			out = append(out, answer{id: id})
		}
	}
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			out[i].st, out[i].err = t.askPeer(cctx, out[i].id, metas[out[i].id].APIAddr)
		})
	}
	wg.Wait()
	return out
}

// askPeer asks member id at api for its status.
func (t *tracker) askPeer(ctx context.Context, id ReplicaID, api string) (PeerStatus, error) {
	st, err := t.dialer.Status(ctx, api)
	if err == nil && st.ID != id {
		// The address now answers as another replica (a container that
		// took a dead member's IP, through a pooled connection): the
		// member itself is not reachable.
		err = fmt.Errorf("%s answers as replica %d, not %d", api, st.ID, id)
	}
	return st, err
}

// leaderAppliedOf is the leader's applied index as this probe found it:
// this node's own when it leads, else the leader's answer; 0 = unknown.
func leaderAppliedOf(self ReplicaID, local Local, answers []answer) uint64 {
	if local.LeaderID == self {
		return local.Applied
	}
	for _, a := range answers {
		if a.err == nil && a.id == local.LeaderID {
			return a.st.Applied
		}
	}
	return 0
}

// syncPeers keeps one peer record per member of ms.
func (t *tracker) syncPeers(ms Membership, now time.Time) {
	all := allMembers(ms)
	for id := range t.peers {
		if _, ok := all[id]; !ok {
			delete(t.peers, id)
		}
	}
	for id := range all {
		if _, ok := t.peers[id]; !ok {
			t.peers[id] = &peer{firstSeen: now}
		}
	}
}

// judge records a peer's answer: it is live when it answered and follows
// the leader's log (Policy.Following).
func (p *peer) judge(pol Policy, a answer, leaderApplied uint64, now time.Time) {
	if a.err != nil {
		p.ok, p.following, p.err, p.liveSince = false, false, a.err.Error(), time.Time{}
		return
	}
	prev := p.st.Applied // of the previous answer; 0 = none
	p.following, p.err = pol.Following(Follow{Ready: a.st.Ready, Reason: a.st.Reason,
		Applied: a.st.Applied, PrevApplied: prev, LeaderApplied: leaderApplied})
	p.ok, p.st = true, a.st
	if !p.following {
		p.liveSince = time.Time{}
		return
	}
	p.lastLive = now
	if p.liveSince.IsZero() {
		p.liveSince = now
	}
}

// stable is how long the config-change ID has been unchanged in this view.
func (t *tracker) stable() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ccAt.IsZero() {
		return 0
	}
	return time.Since(t.ccAt)
}

// removed lists the removed IDs of the last membership read.
func (t *tracker) removed() []ReplicaID {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []ReplicaID
	for id := range t.ms.Removed {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// members is this node's view as rows of Cluster.Members.
func (t *tracker) members() (rows []MemberInfo, ccid uint64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.msOK {
		return nil, 0, false
	}
	self := t.host.Local()
	now := time.Now()
	for id, addr := range allMembers(t.ms) {
		row := MemberInfo{ID: id, Role: t.ms.RoleOf(id), RaftAddr: addr, APIAddr: t.metas[id].APIAddr, Leader: id == self.LeaderID}
		if id == t.host.ID() {
			row.Applied, row.Ready, row.State, row.Reason = self.Applied, self.Ready, self.State, t.reason(self.Ready)
		} else if p := t.peers[id]; p != nil {
			since := p.lastLive
			if since.IsZero() {
				since = p.firstSeen
			}
			switch {
			case p.ok && p.following:
				row.Applied, row.Ready, row.State, row.Reason = p.st.Applied, p.st.Ready, p.st.State, p.st.Reason
				row.LiveFor = max(now.Sub(p.liveSince), time.Millisecond)
			case p.ok:
				row.Applied, row.Ready, row.State, row.Reason = p.st.Applied, p.st.Ready, p.st.State, p.err
				if p.st.Ready {
					row.State = StateStalled
				}
				row.DownFor = max(now.Sub(since), time.Millisecond)
			case row.APIAddr == "":
				row.State, row.Reason = StateJoining, "has not published its API address yet"
				row.DownFor = now.Sub(p.firstSeen)
			default:
				row.State, row.Reason = StateUnreachable, p.err
				row.DownFor = max(now.Sub(since), time.Millisecond)
			}
		}
		rows = append(rows, row)
	}
	for i := range rows {
		if rows[i].State != StateUnreachable && rows[i].State != StateJoining && t.leaderApplied > rows[i].Applied {
			rows[i].Lag = t.leaderApplied - rows[i].Applied
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].ID < rows[j].ID })
	return rows, t.ms.ConfigChangeID, true
}

// ViewOf turns Members rows into the View the policy reads.
func ViewOf(rows []MemberInfo, ccid uint64) View {
	v := View{ConfigChangeID: ccid}
	for _, r := range rows {
		if r.Leader {
			v.LeaderID = r.ID
		}
		v.Members = append(v.Members, MemberState{ID: r.ID, Role: r.Role, Applied: r.Applied, Ready: r.Ready, DownFor: r.DownFor, LiveFor: r.LiveFor})
	}
	return v
}
