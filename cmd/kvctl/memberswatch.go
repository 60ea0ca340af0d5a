package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/client"
)

const membersWatchHelp = `--watch prints one line per member first (kind "member"), then one line
per change as it happens, until interrupted (or --count changes): TIME KIND
MEMBER ROLE REASON, where KIND is joined, caught-up, promoted, unreachable,
reachable, removed, leader-changed, ready or not-ready. -o json prints one
JSON object per line (time, kind, member_id, role, state, reason; leader on
member lines). If the node it watches dies or stops being ready, it goes on
with another endpoint: a line of kind events-lost says that changes in
between may be missing, and the member list as that node sees it follows
(also when kvctl fell more than 1024 changes behind). --timeout does not
apply.`

func membersWatchFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "print the members, then their changes as they happen"},
		&cli.IntFlag{Name: "count", Usage: "with --watch: exit after `N` changes (0: never)"},
	}
}

func runMembersWatch(c *cli.Context) error {
	limit := c.Int("count")
	return withClient(c, func(_ context.Context, cl *client.Client) error {
		ctx, cancel := context.WithCancel(c.Context) // no --timeout: a watch runs until stopped
		defer cancel()
		p := newPrinter(c)
		seen := 0
		for u := range cl.WatchMembers(ctx) {
			if u.Err != nil {
				return u.Err
			}
			if err := p.memberUpdate(u, time.Now()); err != nil {
				return err
			}
			if seen += len(u.Events); limit > 0 && seen >= limit {
				return nil
			}
		}
		return nil
	})
}

// memberLine is one line of kvctl members --watch.
type memberLine struct {
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"`
	MemberID uint64    `json:"member_id"`
	Role     string    `json:"role"`
	State    string    `json:"state"`
	Leader   bool      `json:"leader,omitempty"` // on member lines
	Reason   string    `json:"reason"`
}

// memberUpdate prints an update: the events-lost line, the member list,
// then the events. List lines carry now, the time they are printed.
func (p *printer) memberUpdate(u client.MemberUpdate, now time.Time) error {
	var lines []memberLine
	if u.EventsLost {
		lines = append(lines, memberLine{Time: now, Kind: "events-lost",
			Reason: "changes may be missing here; the members as the node now watched sees them follow"})
	}
	if u.Members != nil {
		for _, m := range u.Members.Members {
			lines = append(lines, memberLine{Time: now, Kind: "member", MemberID: uint64(m.ID), Role: m.Role.String(),
				State: m.State, Leader: m.Leader, Reason: m.Reason})
		}
	}
	for _, e := range u.Events {
		l := memberLine{Time: e.Time, Kind: e.Kind.String(), MemberID: uint64(e.MemberID), Reason: e.Reason}
		if e.Member != nil {
			l.Role, l.State = e.Member.Role.String(), e.Member.State
		}
		lines = append(lines, l)
	}
	for _, l := range lines {
		if err := p.memberLine(l); err != nil {
			return err
		}
	}
	return nil
}

func (p *printer) memberLine(l memberLine) error {
	if p.json {
		l.Time = l.Time.UTC()
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(p.w, "%s\n", b)
		return err
	}
	id := "-"
	if l.MemberID != 0 {
		id = strconv.FormatUint(l.MemberID, 10)
	}
	text := l.Reason // an event's reason says what it needs of the state
	if l.Kind == "member" {
		text = l.State
		if l.Leader && !strings.HasPrefix(l.Reason, "leader") { // the leader's own reason says so
			text += ", leader"
		}
		if l.Reason != "" {
			text += ": " + l.Reason
		}
	}
	_, err := fmt.Fprintf(p.w, "%s  %-14s  %-16s  %-8s  %s\n", l.Time.UTC().Format("2006-01-02T15:04:05.000Z"),
		l.Kind, id, orDash(l.Role), orDash(text))
	return err
}
