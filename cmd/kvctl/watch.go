package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/client"
)

func watchCommand() *cli.Command {
	return &cli.Command{
		Name:      "watch",
		Usage:     "print a key's changes (or a prefix's) as they happen",
		ArgsUsage: "KEY",
		Description: `Prints one line per put or delete, in revision order, until interrupted
(or --count events): "put KEY VALUE rev=N" ("created" when the put created the key),
"delete KEY rev=N"; -o json prints one JSON object per line. With --rev N it starts
at revision N (replaying the history the node keeps); by default it starts now. If
the node it watches dies, it resumes on another endpoint without losing an event.
--timeout does not apply.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "prefix", Usage: "watch every key that starts with KEY"},
			&cli.Uint64Flag{Name: "rev", Usage: "start at revision `N` (0: from now)"},
			&cli.IntFlag{Name: "count", Usage: "exit after `N` events (0: never)"},
		},
		Action: runWatch,
	}
}

func runWatch(c *cli.Context) error {
	if err := wantArgs(c, 1, "KEY"); err != nil {
		return err
	}
	key := []byte(c.Args().Get(0))
	opts := []client.WatchOption{client.WithRevision(c.Uint64("rev"))}
	if c.Bool("prefix") {
		opts = append(opts, client.WithPrefix())
	}
	limit := c.Int("count")
	return withClient(c, func(_ context.Context, cl *client.Client) error {
		ctx, cancel := context.WithCancel(c.Context) // no --timeout: a watch runs until stopped
		defer cancel()
		p := newPrinter(c)
		seen := 0
		for r := range cl.Watch(ctx, key, opts...) {
			if r.Err != nil {
				return r.Err
			}
			for _, e := range r.Events {
				if err := p.watchEvent(e); err != nil {
					return err
				}
				if seen++; limit > 0 && seen >= limit {
					return nil
				}
			}
		}
		return nil
	})
}

func (p *printer) watchEvent(e client.WatchEvent) error {
	if p.json {
		kv := toKVJSON(client.KeyValue{Key: e.Key, Value: e.Value}, e.Type == client.EventDelete)
		b, err := json.Marshal(struct {
			Type        string  `json:"type"`
			Key         string  `json:"key,omitempty"`
			KeyBase64   string  `json:"key_base64,omitempty"`
			Value       *string `json:"value,omitempty"`
			ValueBase64 *string `json:"value_base64,omitempty"`
			ModRevision uint64  `json:"mod_revision"`
			Created     bool    `json:"created,omitempty"`
		}{e.Type.String(), kv.Key, kv.KeyBase64, kv.Value, kv.ValueBase64, e.ModRevision, e.Created})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(p.w, "%s\n", b)
		return err
	}
	var err error
	switch {
	case e.Type == client.EventDelete:
		_, err = fmt.Fprintf(p.w, "delete %s rev=%d\n", cell(e.Key), e.ModRevision)
	case e.Created:
		_, err = fmt.Fprintf(p.w, "put %s %s rev=%d created\n", cell(e.Key), cell(e.Value), e.ModRevision)
	default:
		_, err = fmt.Fprintf(p.w, "put %s %s rev=%d\n", cell(e.Key), cell(e.Value), e.ModRevision)
	}
	return err
}
