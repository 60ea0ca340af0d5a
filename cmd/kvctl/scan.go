package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/client"
)

func scanCommand() *cli.Command {
	return &cli.Command{
		Name:      "scan",
		Usage:     "list the keys with a prefix, in key order",
		ArgsUsage: "PREFIX",
		Description: `Lists the keys starting with PREFIX ("" for all) with their values, as a
KEY/VALUE table or a JSON array. Values with control characters are quoted in
the table. Long scans are read in pages, each a separate read.`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "limit", Usage: "print at most `N` keys (0: all)"},
			&cli.BoolFlag{Name: "keys-only", Usage: "print keys without values"},
			consistencyFlag(),
		},
		Action: runScan,
	}
}

func runScan(c *cli.Context) error {
	if err := wantArgs(c, 1, "PREFIX"); err != nil {
		return err
	}
	if n := c.Int("limit"); n < 0 {
		return usageErrorf("invalid --limit %d: want 0 (all) or more", n)
	}
	ropts, err := readOptions(c)
	if err != nil {
		return err
	}
	opts := client.RangeOptions{
		Prefix:       []byte(c.Args().Get(0)),
		KeysOnly:     c.Bool("keys-only"),
		Serializable: len(ropts) > 0,
	}
	return withClient(c, func(ctx context.Context, cl *client.Client) error {
		kvs, err := cl.RangeAll(ctx, opts, c.Int("limit"))
		if err != nil {
			return err
		}
		return newPrinter(c).kvs(kvs, opts.KeysOnly)
	})
}
