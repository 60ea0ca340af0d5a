package main

import (
	"context"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/client"
)

func membersCommand() *cli.Command {
	return &cli.Command{
		Name:  "members",
		Usage: "list the cluster's members, watch them, or promote or remove one",
		UsageText: `kvctl [global options] members [list]
kvctl [global options] members --watch [--count N]
kvctl [global options] members promote ID
kvctl [global options] members remove ID`,
		Description: `Without a subcommand, or with list: lists every member as seen by the
answering node. With --watch: prints the members, then one line per change as
the node notices it (see below).

promote and remove change the membership; when the cluster has a join secret
they need it (--join-secret or KVCTL_JOIN_SECRET; exit code 7 without it).
A change the cluster refuses, such as removing voters the quorum needs, exits
with 1 and the server's reason; an ID that is not a member exits with 2. If a
change times out, its outcome is unknown (exit 6): list the members before
trying again.

` + membersWatchHelp,
		HideHelpCommand: true,
		Flags:           membersWatchFlags(),
		Action:          runMembers,
		Subcommands:     []*cli.Command{membersListCommand(), membersPromoteCommand(), membersRemoveCommand()},
	}
}

func membersListCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the cluster's members with their role and health",
		Description: `Lists every member as seen by the answering node: ID, ROLE (voter or
observer), STATE (joining, catching-up, ready, isolated: lost its leader or
quorum, stalled: answers but does not follow the leader's log, unreachable,
removed), RAFT ADDR,
API ADDR, APPLIED index, LAG behind the leader, LEADER, how long the member has
been DOWN (empty when reachable), and the REASON for its state. -o json prints
a JSON array of objects.`,
		Action: runMembersList,
	}
}

func membersPromoteCommand() *cli.Command {
	return &cli.Command{
		Name:      "promote",
		Usage:     "make an observer a voter",
		ArgsUsage: "ID",
		Description: `Makes observer ID (see kvctl members) a voter. Promoting a voter does
nothing. Needs --join-secret when the cluster has one.`,
		Action: runMembersPromote,
	}
}

func membersRemoveCommand() *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "remove a member for good",
		ArgsUsage: "ID",
		Description: `Removes member ID (see kvctl members) for good: the ID is never admitted
again, and the member's kvd exits once it learns it was removed (restart it
with --rejoin to join under a new ID). Refused when the voters left reachable
would not be a quorum. Needs --join-secret when the cluster has one.`,
		Action: runMembersRemove,
	}
}

// runMembers is "kvctl members" without a subcommand: the list.
func runMembers(c *cli.Context) error {
	if c.Args().Present() {
		return usageErrorf("kvctl members: unknown subcommand %q: want list, promote ID or remove ID",
			c.Args().First())
	}
	if c.Bool("watch") {
		return runMembersWatch(c)
	}
	return runMembersList(c)
}

func runMembersList(c *cli.Context) error {
	if err := wantArgs(c, 0, ""); err != nil {
		return err
	}
	return withClient(c, func(ctx context.Context, cl *client.Client) error {
		res, err := cl.Members(ctx)
		if err != nil {
			return err
		}
		return newPrinter(c).members(res)
	})
}

func runMembersPromote(c *cli.Context) error {
	id, err := memberIDArg(c)
	if err != nil {
		return err
	}
	return withClient(c, func(ctx context.Context, cl *client.Client) error {
		if err := cl.Promote(ctx, id); err != nil {
			return err
		}
		return newPrinter(c).promoted(id)
	})
}

func runMembersRemove(c *cli.Context) error {
	id, err := memberIDArg(c)
	if err != nil {
		return err
	}
	return withClient(c, func(ctx context.Context, cl *client.Client) error {
		if err := cl.Remove(ctx, id); err != nil {
			return err
		}
		return newPrinter(c).removed(id)
	})
}

// memberIDArg is the command's one argument, a member ID.
func memberIDArg(c *cli.Context) (client.MemberID, error) {
	if err := wantArgs(c, 1, "ID"); err != nil {
		return 0, err
	}
	s := c.Args().First()
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, usageErrorf("kvctl %s: invalid member ID %q: want a positive integer, as kvctl members lists",
			commandPath(c), s)
	}
	return client.MemberID(id), nil
}
