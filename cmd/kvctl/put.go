package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/client"
)

func putCommand() *cli.Command {
	return &cli.Command{
		Name:      "put",
		Usage:     "set a key; prints the write's revision",
		ArgsUsage: "KEY VALUE",
		Description: `Sets KEY to VALUE. A VALUE of - reads the value from stdin, as is.
With --if-mod-revision it is a compare-and-swap: the write happens only if the
key's mod revision is N (0: only if the key does not exist); otherwise kvctl
exits with code 3.`,
		Flags: []cli.Flag{
			&cli.Uint64Flag{Name: "if-mod-revision", Usage: "write only if the key's mod revision is `N` (0: only if absent)"},
		},
		Action: runPut,
	}
}

func runPut(c *cli.Context) error {
	if err := wantArgs(c, 2, "KEY VALUE"); err != nil {
		return err
	}
	key, value := []byte(c.Args().Get(0)), []byte(c.Args().Get(1))
	if string(value) == "-" {
		var err error
		if value, err = io.ReadAll(c.App.Reader); err != nil {
			return fmt.Errorf("reading the value from stdin: %w", err)
		}
	}
	var opts []client.WriteOption
	if c.IsSet("if-mod-revision") {
		opts = append(opts, client.IfModRevision(c.Uint64("if-mod-revision")))
	}
	return withClient(c, func(ctx context.Context, cl *client.Client) error {
		res, err := cl.Put(ctx, key, value, opts...)
		if err != nil {
			return compareFailed(err, key, c.Uint64("if-mod-revision"))
		}
		return newPrinter(c).put(res)
	})
}

// compareFailed rewrites a compare failure of a write to key as a message
// that says what the revision was; other errors pass through.
func compareFailed(err error, key []byte, want uint64) error {
	if !errors.Is(err, client.ErrCompareFailed) {
		return err
	}
	msg := fmt.Sprintf("compare failed: key %q does not have mod revision %d", key, want)
	if want == 0 {
		msg = fmt.Sprintf("compare failed: key %q already exists", key)
	}
	if cur, ok := client.CurrentModRevision(err); ok {
		if cur == 0 {
			msg += " (it does not exist)"
		} else {
			msg += fmt.Sprintf(" (its mod revision is %d)", cur)
		}
	}
	return &exitError{code: exitCompareFailed, err: fmt.Errorf("%s; re-read it and retry", msg)}
}
