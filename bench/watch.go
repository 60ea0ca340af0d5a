package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/bench/load"
	"github.com/kvd-project/kvd/client"
)

// kvWatchers are the --watchers of a kvd run: one client per member's API
// address (every member, or the observers only), watcher i on client
// i % members.
type kvWatchers struct {
	set     *load.WatchSet
	on      string
	clients []*client.Client
}

// watchSettle bounds how long watchers may take to open, and to receive
// the last acknowledged put once the load has stopped.
const watchSettle = 30 * time.Second

// startKVWatchers opens --watchers watches before the load, and makes the
// load's targets note every put's acknowledgement; nil without --watchers.
func startKVWatchers(c *cli.Context, o dialOptions, targets []load.Target) (*kvWatchers, error) {
	n := c.Int("watchers")
	if n <= 0 {
		if c.Bool("watch-observers") {
			return nil, errors.New("--watch-observers needs --watchers N")
		}
		return nil, nil
	}
	on := "all"
	if c.Bool("watch-observers") {
		on = "observers"
	}
	addrs, err := watchAddrs(c.Context, targets[0].(*kvTarget).c, on == "observers")
	if err != nil {
		return nil, err
	}
	kw := &kvWatchers{on: on}
	var wts []load.WatchTarget
	for _, a := range addrs {
		cl, err := client.New(client.Config{Endpoints: []string{a}, TLS: o.TLS, Protocol: client.Protocol(o.Protocol)})
		if err != nil {
			kw.close()
			return nil, err
		}
		kw.clients = append(kw.clients, cl)
		wts = append(wts, kvWatchTarget{cl})
	}
	acks := load.NewAcks()
	for _, t := range targets {
		t.(*kvTarget).acks = acks
	}
	if kw.set, err = load.StartWatchers(c.Context, n, wts, acks, watchSettle); err != nil {
		kw.close()
		return nil, err
	}
	return kw, nil
}

// watchAddrs lists the API addresses of every member (or the observers).
func watchAddrs(ctx context.Context, c *client.Client, observers bool) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ms, err := c.Members(ctx)
	if err != nil {
		return nil, fmt.Errorf("--watchers: list the members: %w", err)
	}
	var out []string
	for _, m := range ms.Members {
		if m.APIAddr != "" && (!observers || m.Role == client.RoleObserver) {
			out = append(out, m.APIAddr)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--watchers: no member to watch on (observers only: %v)", observers)
	}
	return out, nil
}

// finish waits for the watchers to receive the last put and adds their
// figures to res.
func (kw *kvWatchers) finish(res *load.Result) error {
	res.WatchOn = kw.on
	return kw.set.Finish(res, watchSettle)
}

func (kw *kvWatchers) close() {
	if kw.set != nil {
		kw.set.Stop()
	}
	for _, c := range kw.clients {
		c.Close()
	}
}

// kvWatchTarget watches through client.Watch.
type kvWatchTarget struct{ c *client.Client }

func (t kvWatchTarget) Watch(ctx context.Context, prefix []byte, sink *load.WatchSink) error {
	for r := range t.c.Watch(ctx, prefix, client.WithPrefix()) {
		if r.Err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return r.Err
		}
		for _, e := range r.Events {
			if e.Type == client.EventPut {
				sink.Event(e.ModRevision, e.Key)
			}
		}
		sink.Progress(r.Revision)
	}
	return nil
}
