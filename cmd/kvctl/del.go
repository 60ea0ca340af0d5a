package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/client"
)

func delCommand() *cli.Command {
	return &cli.Command{
		Name:      "del",
		Aliases:   []string{"delete"},
		Usage:     "delete a key; prints the revision and whether it existed",
		ArgsUsage: "KEY",
		Description: `Deletes KEY. Deleting a missing key succeeds with deleted=0. With
--if-mod-revision it is a compare-and-delete (exit code 3 on a mismatch).`,
		Flags: []cli.Flag{
			&cli.Uint64Flag{Name: "if-mod-revision", Usage: "delete only if the key's mod revision is `N`"},
		},
		Action: runDel,
	}
}

func runDel(c *cli.Context) error {
	if err := wantArgs(c, 1, "KEY"); err != nil {
		return err
	}
	key := []byte(c.Args().Get(0))
	var opts []client.WriteOption
	if c.IsSet("if-mod-revision") {
		opts = append(opts, client.IfModRevision(c.Uint64("if-mod-revision")))
	}
	return withClient(c, func(ctx context.Context, cl *client.Client) error {
		res, err := cl.Delete(ctx, key, opts...)
		if err != nil {
			return compareFailed(err, key, c.Uint64("if-mod-revision"))
		}
		return newPrinter(c).del(res)
	})
}
