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
	// DownFor: how long the member has not been live (0 = live): its API
	// did not answer, or it answered but did not follow the leader's log
	// (Following).
	DownFor time.Duration
	// LiveFor: how long it has been live without a break, as this node saw
	// it (0 = down or unknown). Members live since the same probe share it.
	LiveFor time.Duration
}

// View is the leader's published view of the cluster (Cluster.Members).
type View struct {
	LeaderID       ReplicaID
	ConfigChangeID uint64
	Members        []MemberState
	Removed        map[ReplicaID]bool
	// Stable: how long the config-change ID has been unchanged in this
	// node's view (0 = unknown).
	Stable time.Duration
}

// leaderApplied is the leader's applied index in v; 0 = unknown.
func (v View) leaderApplied() uint64 {
	m, _ := v.member(v.LeaderID)
	return m.Applied
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

func (a Action) String() string {
	switch a {
	case Wait:
		return "wait"
	case Promote:
		return "promote"
	case Remove:
		return "remove"
	}
	return "unknown"
}

// Decision is an action with its target and the reason, which is logged and
// shown in `kvctl members`.
type Decision struct {
	Action Action
	Target ReplicaID
	Reason string
}

func quorum(n int) int { return n/2 + 1 }

// voters counts the voters of v: all of them, those holding a seat (down
// for less than deadAfter), and those live now.
func (v View) voters(deadAfter time.Duration) (voters, seated, live int) {
	for _, m := range v.Members {
		if m.Role != RoleVoter {
			continue
		}
		voters++
		if m.DownFor < deadAfter {
			seated++
		}
		if m.DownFor == 0 {
			live++
		}
	}
	return voters, seated, live
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
	voters, seated, reachable := v.voters(p.DeadAfter)
	if seated >= p.Voters {
		return Decision{Reason: fmt.Sprintf("voter target reached (%d of %d): read replica", seated, p.Voters)}
	}
	if reachable+1 < quorum(voters+1) {
		return Decision{Reason: fmt.Sprintf("no quorum: %d of %d voters reachable", reachable, voters)}
	}
	if caughtUpFor < p.PromoteAfter {
		return Decision{Reason: fmt.Sprintf("dwell time: caught up for %s of %s", caughtUpFor.Truncate(100*time.Millisecond), p.PromoteAfter)}
	}
	switch best := p.bestObserver(v); best {
	case self:
	case 0:
		return Decision{Reason: "the leader does not see this node live"}
	default:
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

// Follow is one successful probe of a member, for Following.
type Follow struct {
	Ready         bool
	Reason        string // the member's own reason when not ready
	Applied       uint64
	PrevApplied   uint64 // at the previous successful probe; 0 = none
	LeaderApplied uint64 // the leader's, read before the probe; 0 = unknown
}

// Following tells whether a member whose API answers is live: it must be
// ready (it has a leader and completes ReadIndex, see node/readiness.go),
// and its applied index within MaxLag of the leader's or moving since the
// previous probe. A member cut off on its Raft port only answers probes but
// fails this; an idle cluster flags nobody (no lag), and a slow member that
// still applies entries is not flagged.
func (p Policy) Following(f Follow) (bool, string) {
	switch {
	case !f.Ready:
		if f.Reason == "" {
			return false, "answers, but is not ready"
		}
		return false, "answers, but is not ready: " + f.Reason
	case f.LeaderApplied == 0 || f.Applied+p.MaxLag >= f.LeaderApplied:
		return true, ""
	case f.PrevApplied != 0 && f.Applied > f.PrevApplied:
		return true, "" // slow, but moving
	}
	return false, fmt.Sprintf("answers, but does not follow the leader's log: applied %d, %d behind the leader's %d and not moving",
		f.Applied, f.LeaderApplied-f.Applied, f.LeaderApplied)
}

// settleTime: the membership must have been unchanged this long before the
// leader retires a surplus voter, so that a change in flight (a promotion,
// a join) is applied and seen first.
const settleTime = 2 * time.Second

// DecideRemoval is what the leader does about voters: it removes a dead one
// once the voters are above the target (its replacement has been promoted),
// and, when more voters hold a seat than the target (a dead voter came back
// after an observer took its seat, or an operator promoted one), retires
// one of them (decideSurplus). Never the leader, never when the live voters
// left would not be a quorum.
func DecideRemoval(p Policy, v View) Decision {
	voters, _, reachable := v.voters(p.DeadAfter)
	var dead []MemberState
	for _, m := range v.Members {
		if m.Role == RoleVoter && m.DownFor >= p.DeadAfter && m.ID != v.LeaderID {
			dead = append(dead, m)
		}
	}
	if len(dead) == 0 {
		return p.decideSurplus(v)
	}
	sort.Slice(dead, func(i, j int) bool { return dead[i].DownFor > dead[j].DownFor })
	d := dead[0]
	if voters <= p.Voters {
		return Decision{Reason: fmt.Sprintf("voter %d down for %s; waiting for an observer to take its seat (%d voters, target %d)",
			d.ID, d.DownFor.Truncate(time.Second), voters, p.Voters)}
	}
	if reachable < quorum(voters) || reachable < quorum(voters-1) {
		return Decision{Reason: fmt.Sprintf("voter %d down for %s, but only %d of %d voters are live: no quorum to remove it",
			d.ID, d.DownFor.Truncate(time.Second), reachable, voters)}
	}
	return Decision{Action: Remove, Target: d.ID,
		Reason: fmt.Sprintf("voter %d down for %s (dead after %s) and %d voters exceed the target %d",
			d.ID, d.DownFor.Truncate(time.Second), p.DeadAfter, voters, p.Voters)}
}

// decideSurplus retires one voter when more hold a seat than the target.
// Dragonboat cannot demote a voter (it rejects AddNonVoting on one), so the
// voter is removed; it stops with the removal marker and rejoins as an
// observer with --rejoin (DESIGN.md). Which one, in order: a voter that is
// down now (longest first); then the one live for the shortest time (it
// came back most recently: it was down when its seat was refilled); then
// the least caught up; then the highest ID. Deterministic for one view.
func (p Policy) decideSurplus(v View) Decision {
	voters, seated, live := v.voters(p.DeadAfter)
	if seated <= p.Voters {
		return Decision{}
	}
	if v.Stable < settleTime {
		return Decision{Reason: fmt.Sprintf("%d voters hold a seat, target %d: the membership changed %s ago; retiring one once it has been stable for %s",
			seated, p.Voters, v.Stable.Truncate(100*time.Millisecond), settleTime)}
	}
	var cands []MemberState
	for _, m := range v.Members {
		if m.Role == RoleVoter && m.ID != v.LeaderID {
			cands = append(cands, m)
		}
	}
	if len(cands) == 0 {
		return Decision{}
	}
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		switch {
		case a.DownFor != b.DownFor:
			return a.DownFor > b.DownFor
		case a.LiveFor != b.LiveFor:
			return a.LiveFor < b.LiveFor
		case a.Applied != b.Applied:
			return a.Applied < b.Applied
		}
		return a.ID > b.ID
	})
	d := cands[0]
	others := live
	if d.DownFor == 0 {
		others--
	}
	if live < quorum(voters) || others < quorum(voters-1) {
		return Decision{Reason: fmt.Sprintf("%d voters hold a seat, target %d, but only %d are live: no quorum to retire voter %d",
			seated, p.Voters, live, d.ID)}
	}
	why := fmt.Sprintf("live for %s, the shortest", d.LiveFor.Truncate(100*time.Millisecond))
	if d.DownFor > 0 {
		why = fmt.Sprintf("down for %s", d.DownFor.Truncate(100*time.Millisecond))
	} else if len(cands) > 1 && cands[1].LiveFor == d.LiveFor {
		why = fmt.Sprintf("the least caught up, applied %d", d.Applied)
	}
	return Decision{Action: Remove, Target: d.ID,
		Reason: fmt.Sprintf("%d voters hold a seat, target %d: retiring surplus voter %d (%s); it stops and can rejoin as an observer with --rejoin",
			seated, p.Voters, d.ID, why)}
}

// CheckRemoval is the guard for an operator's removal of id (kvctl members
// remove, --leave-on-exit), against the view of the node asked: its
// Members rows (ok false: it has none yet, ErrNoView). Refused when the
// live voters left would not be a quorum.
func CheckRemoval(rows []MemberInfo, ccid uint64, ok bool, id ReplicaID) error {
	if !ok {
		return ErrNoView
	}
	return checkRemoval(ViewOf(rows, ccid), id)
}

func checkRemoval(v View, id ReplicaID) error {
	m, ok := v.member(id)
	if !ok {
		return fmt.Errorf("%w: replica %d", ErrNotMember, id)
	}
	if m.Role != RoleVoter {
		return nil
	}
	voters, _, live := v.voters(0)
	if m.DownFor == 0 {
		live-- // id's own vote goes with it
	}
	if voters == 1 {
		return fmt.Errorf("%w: replica %d is the only voter", ErrNoQuorum, id)
	}
	if live < quorum(voters-1) {
		return fmt.Errorf("%w: without voter %d, %d of %d voters would be reachable (quorum %d)",
			ErrNoQuorum, id, live, voters-1, quorum(voters-1))
	}
	return nil
}
