package membership

import (
	"fmt"
	"sort"
	"time"
)

// Policy is the autopilot's configuration.
type Policy struct {
	// Voters is the voter target (odd). Caught-up observers promote
	// themselves while fewer voters hold a seat; beyond it they stay
	// observers (read replicas).
	Voters int
	// PromoteAfter: an observer's lag must stay at most MaxLag for this
	// long before it promotes itself.
	PromoteAfter time.Duration
	// DeadAfter: a voter the leader cannot reach for this long loses its
	// seat: an observer takes it, then the dead voter is removed.
	DeadAfter time.Duration
	// MaxLag: entries behind the leader that still count as caught up.
	MaxLag uint64
}

// DefaultPolicy: 3 voters, 2 s dwell, 30 s to declare a voter dead.
func DefaultPolicy() Policy {
	return Policy{Voters: 3, PromoteAfter: 2 * time.Second, DeadAfter: 30 * time.Second, MaxLag: 64}
}

// Validate names the bad setting.
func (p Policy) Validate() error {
	switch {
	case p.Voters < 1 || p.Voters%2 == 0:
		return fmt.Errorf("%w: --voters (%d) must be odd and at least 1", ErrBadFlags, p.Voters)
	case p.PromoteAfter < 0:
		return fmt.Errorf("%w: --promote-after (%s) must not be negative", ErrBadFlags, p.PromoteAfter)
	case p.DeadAfter <= 0:
		return fmt.Errorf("%w: --dead-after (%s) must be positive", ErrBadFlags, p.DeadAfter)
	}
	return nil
}

// MemberState is one member as the leader sees it.
type MemberState struct {
	ID      ReplicaID
	Role    Role
	Applied uint64
	Ready   bool
	// APIAddr is the member's published API address ("" until it has
	// published its metadata, which it does once it has run and caught up).
	APIAddr string
	// DownFor: how long the leader has not reached the member (0 = reachable).
	DownFor time.Duration
}

// View is the leader's published view of the cluster (Cluster.Members).
type View struct {
	LeaderID       ReplicaID
	ConfigChangeID uint64
	Members        []MemberState
	Removed        map[ReplicaID]bool
}

func (v View) member(id ReplicaID) (MemberState, bool) {
	for _, m := range v.Members {
		if m.ID == id {
			return m, true
		}
	}
	return MemberState{}, false
}

// Action is what a decision asks for.
type Action int

const (
	Wait Action = iota
	Promote
	Remove
)

// Decision is an action with its target and the reason, which is logged and
// shown in `kvctl members`.
type Decision struct {
	Action Action
	Target ReplicaID
	Reason string
}

func quorum(n int) int { return n/2 + 1 }

// count tallies voters: holding a seat (not dead) and reachable now.
func (p Policy) count(v View) (voters, seated, reachable int) {
	for _, m := range v.Members {
		if m.Role != RoleVoter {
			continue
		}
		voters++
		if m.DownFor < p.DeadAfter {
			seated++
		}
		if m.DownFor == 0 {
			reachable++
		}
	}
	return
}

// DecidePromotion is what observer self does, given the leader's view and
// how long its own lag has stayed at most MaxLag.
func DecidePromotion(p Policy, v View, self ReplicaID, caughtUpFor time.Duration) Decision {
	me, ok := v.member(self)
	switch {
	case !ok:
		return Decision{Reason: "not in the leader's view of the membership yet"}
	case me.Role == RoleVoter:
		return Decision{Reason: "voter"}
	case !me.Ready:
		return Decision{Reason: "catching up"}
	}
	voters, seated, reachable := p.count(v)
	if seated >= p.Voters {
		return Decision{Reason: fmt.Sprintf("voter target reached (%d of %d): read replica", seated, p.Voters)}
	}
	if reachable+1 < quorum(voters+1) {
		return Decision{Reason: fmt.Sprintf("no quorum: %d of %d voters reachable", reachable, voters)}
	}
	if caughtUpFor < p.PromoteAfter {
		return Decision{Reason: fmt.Sprintf("dwell time: caught up for %s of %s", caughtUpFor.Truncate(100*time.Millisecond), p.PromoteAfter)}
	}
	if best := p.bestObserver(v); best != self {
		return Decision{Reason: fmt.Sprintf("observer %d is ahead for the free seat", best)}
	}
	return Decision{Action: Promote, Target: self,
		Reason: fmt.Sprintf("%d of %d voter seats held, caught up for %s", seated, p.Voters, caughtUpFor.Truncate(100*time.Millisecond))}
}

// bestObserver is the observer that should take a free seat: ready,
// reachable, within MaxLag of the most caught-up one, lowest ID among those.
func (p Policy) bestObserver(v View) ReplicaID {
	var cands []MemberState
	var top uint64
	for _, m := range v.Members {
		if m.Role == RoleObserver && m.Ready && m.DownFor == 0 {
			cands = append(cands, m)
			top = max(top, m.Applied)
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].ID < cands[j].ID })
	for _, m := range cands {
		if top-m.Applied <= p.MaxLag {
			return m.ID
		}
	}
	return 0
}

// DecideRemoval is what the leader does about dead voters: remove one once
// the voters are above the target (its replacement has been promoted), and
// never when the reachable voters left would not be a quorum.
func DecideRemoval(p Policy, v View) Decision {
	voters, _, reachable := p.count(v)
	var dead []MemberState
	for _, m := range v.Members {
		if m.Role == RoleVoter && m.DownFor >= p.DeadAfter && m.ID != v.LeaderID {
			dead = append(dead, m)
		}
	}
	if len(dead) == 0 {
		return Decision{}
	}
	sort.Slice(dead, func(i, j int) bool { return dead[i].DownFor > dead[j].DownFor })
	d := dead[0]
	if voters <= p.Voters {
		return Decision{Reason: fmt.Sprintf("voter %d unreachable for %s; waiting for an observer to take its seat (%d voters, target %d)",
			d.ID, d.DownFor.Truncate(time.Second), voters, p.Voters)}
	}
	if reachable < quorum(voters) || reachable < quorum(voters-1) {
		return Decision{Reason: fmt.Sprintf("voter %d unreachable for %s, but only %d of %d voters are reachable: no quorum to remove it",
			d.ID, d.DownFor.Truncate(time.Second), reachable, voters)}
	}
	return Decision{Action: Remove, Target: d.ID,
		Reason: fmt.Sprintf("voter %d unreachable for %s (dead after %s) and %d voters exceed the target %d",
			d.ID, d.DownFor.Truncate(time.Second), p.DeadAfter, voters, p.Voters)}
}

// CheckRemoval is the guard for an operator's removal of id: refused when
// the reachable voters left would not be a quorum.
func CheckRemoval(v View, id ReplicaID) error {
	m, ok := v.member(id)
	if !ok {
		return fmt.Errorf("%w: replica %d", ErrNotMember, id)
	}
	if m.Role != RoleVoter {
		return nil
	}
	voters, reachable := 0, 0
	for _, x := range v.Members {
		if x.Role == RoleVoter {
			voters++
			if x.DownFor == 0 && x.ID != id {
				reachable++
			}
		}
	}
	if voters == 1 {
		return fmt.Errorf("%w: replica %d is the only voter", ErrNoQuorum, id)
	}
	if reachable < quorum(voters-1) {
		return fmt.Errorf("%w: without voter %d, %d of %d voters would be reachable (quorum %d)",
			ErrNoQuorum, id, reachable, voters-1, quorum(voters-1))
	}
	return nil
}
