package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/client"
)

func getCommand() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "print a key's value",
		ArgsUsage: "KEY",
		Description: `Prints the bare value and a newline (table output), or a JSON object with
the key, value and revisions (-o json). A missing key exits with code 2.`,
		Flags:  []cli.Flag{consistencyFlag()},
		Action: runGet,
	}
}

func runGet(c *cli.Context) error {
	if err := wantArgs(c, 1, "KEY"); err != nil {
		return err
	}
	opts, err := readOptions(c)
	if err != nil {
		return err
	}
	key := []byte(c.Args().Get(0))
	return withClient(c, func(ctx context.Context, cl *client.Client) error {
		kv, err := cl.Get(ctx, key, opts...)
		if errors.Is(err, client.ErrNotFound) {
			return &exitError{code: exitNotFound, err: fmt.Errorf("key %q not found", key)}
		}
		if err != nil {
			return err
		}
		return newPrinter(c).get(kv)
	})
}

func consistencyFlag() cli.Flag {
	return &cli.StringFlag{Name: "consistency", Value: "linearizable",
		Usage: "`linearizable` (sees every acknowledged write) or serializable (local read, faster, may be stale)"}
}

// readOptions turns --consistency into client options.
func readOptions(c *cli.Context) ([]client.ReadOption, error) {
	switch v := c.String("consistency"); v {
	case "linearizable", "l":
		return nil, nil
	case "serializable", "s":
		return []client.ReadOption{client.Serializable()}, nil
	default:
		return nil, usageErrorf("invalid --consistency %q: want linearizable or serializable", v)
	}
}
