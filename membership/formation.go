package membership

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// Peer is a node's identity as exchanged while a cluster forms.
type Peer struct {
	ID       ReplicaID
	RaftAddr string
	APIAddr  string
}

// PeerIdentity is what a node answers to Identify: who it is, whether it is
// already part of a running cluster (Formed), its initial members if it
// bootstrapped one, and, while forming, its proposal for the initial set.
type PeerIdentity struct {
	Peer
	Formed   bool
	Members  []Peer // initial members of the cluster it bootstrapped (Formed)
	Proposal []Peer // proposed initial members (not Formed)
}

// FormAction is the outcome of DecideFormation.
type FormAction int

const (
	FormWait FormAction = iota
	FormBootstrap
	FormJoin
)

// FormDecision says what a node with no local state does under
// --bootstrap-expect.
type FormDecision struct {
	Action   FormAction
	Members  []Peer // FormBootstrap: the initial members, sorted by ID
	Proposal []Peer // the node's current proposal, published to its peers
	Reason   string
}

// DecideFormation is the cold-start decision (a pure function). self has no
// local state; peers are the identities of the discovered peers that
// answered. Rules:
//   - a peer already in a running cluster wins: bootstrap with its initial
//     members if they include self (we agreed before and crashed), else join;
//   - fewer than expect nodes seen: wait;
//   - the proposal is the expect lowest IDs seen; a node outside it waits to
//     join; a node inside it bootstraps once every other proposed member
//     publishes the same proposal — so all derive the same set, and never
//     two clusters.
func DecideFormation(self Peer, expect int, peers []PeerIdentity) FormDecision {
	for _, p := range peers {
		if !p.Formed {
			continue
		}
		for _, m := range p.Members {
			if m.ID == self.ID {
				return FormDecision{Action: FormBootstrap, Members: sortPeers(p.Members),
					Reason: fmt.Sprintf("peer %d bootstrapped the agreed set", p.ID)}
			}
		}
		return FormDecision{Action: FormJoin, Reason: fmt.Sprintf("peer %d is in a running cluster", p.ID)}
	}
	known := map[ReplicaID]Peer{self.ID: self}
	for _, p := range peers {
		known[p.ID] = p.Peer
	}
	all := make([]Peer, 0, len(known))
	for _, p := range known {
		all = append(all, p)
	}
	all = sortPeers(all)
	if len(all) < expect {
		return FormDecision{Reason: fmt.Sprintf("seen %d of %d expected nodes", len(all), expect)}
	}
	proposal := all[:expect]
	d := FormDecision{Proposal: proposal}
	in := false
	for _, p := range proposal {
		in = in || p.ID == self.ID
	}
	if !in {
		d.Reason = fmt.Sprintf("not among the %d lowest IDs (%s); will join once they have formed", expect, peerIDs(proposal))
		return d
	}
	byID := map[ReplicaID]PeerIdentity{}
	for _, p := range peers {
		byID[p.ID] = p
	}
	for _, m := range proposal {
		if m.ID == self.ID {
			continue
		}
		if p, ok := byID[m.ID]; !ok || peerIDs(p.Proposal) != peerIDs(proposal) {
			d.Reason = fmt.Sprintf("waiting for node %d to agree on %s", m.ID, peerIDs(proposal))
			return d
		}
	}
	d.Action, d.Members = FormBootstrap, proposal
	d.Reason = fmt.Sprintf("all %d agree on %s", expect, peerIDs(proposal))
	return d
}

func sortPeers(ps []Peer) []Peer {
	out := append([]Peer(nil), ps...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func peerIDs(ps []Peer) string {
	ids := make([]string, len(ps))
	for i, p := range sortPeers(ps) {
		ids[i] = fmt.Sprint(p.ID)
	}
	return "[" + strings.Join(ids, " ") + "]"
}

// Formation is a node's published formation state, read by the Identify
// handler (which answers even before the node has started) and written by
// the node as it forms, joins or starts.
type Formation struct {
	mu sync.Mutex
	id PeerIdentity
}

// Set replaces the published identity.
func (f *Formation) Set(id PeerIdentity) {
	f.mu.Lock()
	f.id = id
	f.mu.Unlock()
}

// Get returns the published identity (zero ID: not known yet).
func (f *Formation) Get() PeerIdentity {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.id
}

// Form runs the cold-start agreement: it asks the discovered peers who they
// are, publishes its own proposal in f, and returns once DecideFormation says
// bootstrap or join (or ctx ends). Peers that don't answer are left out.
func Form(ctx context.Context, d PeerDialer, seeds func() []string, self Peer, expect int, f *Formation, log *slog.Logger) (FormDecision, error) {
	f.Set(PeerIdentity{Peer: self})
	lastReason := ""
	for round := 1; ; round++ {
		addrs := seeds()
		ids := make([]PeerIdentity, len(addrs))
		ok := make([]bool, len(addrs))
		var wg sync.WaitGroup
		for i, a := range addrs {
			wg.Add(1)
			go func(i int, a string) {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				if id, err := d.Identify(cctx, a); err == nil && id.ID != 0 && id.ID != self.ID {
					ids[i], ok[i] = id, true
				}
			}(i, a)
		}
		wg.Wait()
		var peers []PeerIdentity
		for i := range ids {
			if ok[i] {
				peers = append(peers, ids[i])
			}
		}
		dec := DecideFormation(self, expect, peers)
		f.Set(PeerIdentity{Peer: self, Proposal: dec.Proposal})
		if dec.Reason != lastReason || round%20 == 0 {
			log.Info("forming a cluster (--bootstrap-expect)", "expect", expect, "discovered", len(addrs), "answered", len(peers), "decision", dec.Reason)
			lastReason = dec.Reason
		}
		if dec.Action != FormWait {
			return dec, nil
		}
		select {
		case <-ctx.Done():
			return dec, fmt.Errorf("forming a cluster: %w (last: %s)", ctx.Err(), dec.Reason)
		case <-time.After(300 * time.Millisecond):
		}
	}
}
