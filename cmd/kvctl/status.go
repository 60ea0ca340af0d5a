package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/client"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "print the answering node's own view",
		Description: `Prints the status of the first reachable endpoint: its ID, role, state,
leader, term, applied index, addresses, version and the reason for its state,
as key: value lines or a JSON object. While the node catches up, a catch_up
line shows its progress: "applied X of Y". To ask one node, give only it:
kvctl --endpoints host:port status.

With --ready it exits 4 unless the node has caught up and serves (a
container healthcheck: kvctl --endpoints 127.0.0.1:7070 status --ready).`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "ready", Usage: "exit 4 unless the answering node is ready"},
		},
		Action: runStatus,
	}
}

func runStatus(c *cli.Context) error {
	if err := wantArgs(c, 0, ""); err != nil {
		return err
	}
	return withClient(c, func(ctx context.Context, cl *client.Client) error {
		st, err := cl.Status(ctx)
		if err != nil {
			return err
		}
		if err := newPrinter(c).status(st); err != nil {
			return err
		}
		if c.Bool("ready") && !st.Ready {
			return &exitError{code: exitUnavailable, err: fmt.Errorf("node %d is not ready (%s)", st.ID, st.State)}
		}
		return nil
	})
}
