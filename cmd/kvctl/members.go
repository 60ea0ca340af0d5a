package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/client"
)

func membersCommand() *cli.Command {
	return &cli.Command{
		Name:  "members",
		Usage: "list the cluster's members with their role and health",
		Description: `Lists every member as seen by the answering node: ID, ROLE (voter or
observer), STATE (joining, catching-up, ready, unreachable), RAFT ADDR,
API ADDR, APPLIED index, LAG behind the leader, LEADER, and the REASON for its
state. -o json prints a JSON array of objects.`,
		Action: runMembers,
	}
}

func runMembers(c *cli.Context) error {
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
