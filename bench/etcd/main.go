// Command etcd-bench drives an etcd cluster with kvd's load generator
// (bench/load): the same closed loop, key and value generation, exact
// percentiles and JSON, so that its figures compare one to one with
// `go run ./bench`. Flags have the same names as bench's.
//
// It is a module of its own, so that the etcd client and its gRPC stack
// stay out of kvd's go.mod:
//
//	cd bench/etcd && go build -o /tmp/etcd-bench . && /tmp/etcd-bench --endpoints 127.0.0.1:2379 --clients 64
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/kvd-project/kvd/bench/load"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	var acks *load.Acks
	if o.watchers > 0 {
		acks = load.NewAcks()
	}
	targets, closeAll, err := o.targets(acks)
	defer closeAll()
	if err != nil {
		return err
	}
	if err := preflight(ctx, targets, o.endpoints); err != nil {
		return err
	}
	var ws *load.WatchSet
	if o.watchers > 0 {
		wts, closeWatchers, err := watchTargets(o.endpoints)
		if err != nil {
			return err
		}
		defer closeWatchers()
		if ws, err = load.StartWatchers(ctx, o.watchers, wts, acks, watchSettle); err != nil {
			return err
		}
		defer ws.Stop()
	}
	res, err := load.Run(ctx, o.w, targets, progressOut())
	if err != nil {
		return err
	}
	var watchErr error
	if ws != nil {
		res.WatchOn = "all"
		watchErr = ws.Finish(res, watchSettle)
	}
	res.Mode, res.Target, res.Protocol, res.Transport, res.Label = "etcd", strings.Join(o.endpoints, ","), "grpc", "h2c", o.label
	if o.w.ReadRatio > 0 {
		res.Consistency = o.consistency
	}
	if err := o.write(res); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return errors.New("interrupted: the figures above cover only the time measured")
	}
	if watchErr != nil {
		return fmt.Errorf("watchers: %w", watchErr)
	}
	return nil
}

// options are the parsed flags.
type options struct {
	w           load.Workload
	endpoints   []string
	spread      bool
	consistency string
	getOpts     []clientv3.OpOption
	timeout     time.Duration
	asJSON      bool
	plot, label string
	watchers    int
}

func parseFlags(args []string) (options, error) {
	d := load.DefaultWorkload()
	fs := flag.NewFlagSet("etcd-bench", flag.ContinueOnError)
	endpoints := fs.String("endpoints", "127.0.0.1:2379", "etcd client addresses, comma-separated")
	spread := fs.Bool("spread", false, "one client per endpoint, workers spread over them round-robin; default: one client over all endpoints (etcd's balancer)")
	consistency := fs.String("consistency", "linearizable", "consistency of gets: linearizable or serializable")
	timeout := fs.Duration("timeout", 5*time.Second, "timeout of each call")
	clients := fs.Int("clients", d.Clients, "concurrent workers, each with one call in flight")
	duration := fs.Duration("duration", d.Duration, "how long to measure (not with --ops)")
	ops := fs.Int64("ops", 0, "measure this many operations instead of a duration")
	warmup := fs.Duration("warmup", d.Warmup, "unmeasured load before measuring")
	keySize := fs.Int("key-size", d.KeySize, "key size in bytes")
	valueSize := fs.Int("value-size", d.ValueSize, "value size in bytes")
	keyspace := fs.Int("keyspace", d.Keyspace, "number of distinct keys")
	keyDist := fs.String("key-dist", string(d.KeyDist), "uniform or sequential")
	readRatio := fs.Float64("read-ratio", 0, "fraction of operations that are gets (0..1)")
	preload := fs.Bool("preload", false, "first write every key of the keyspace once (unmeasured)")
	seed := fs.Uint64("seed", d.Seed, "seed of keys, values and the read/write mix")
	asJSON := fs.Bool("json", false, "print one JSON object instead of the summary")
	plot := fs.String("plot", "", "write throughput and latency over time to this .html file")
	label := fs.String("label", "", "tag the results with this label (bench table pairs runs with the same label)")
	watchers := fs.Int("watchers", 0, "open N watches of the bench's keys (prefix \"k\") during the load, spread over the endpoints, and report events/s and the latency from a put's acknowledgement to its event")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o := options{
		w: load.Workload{Clients: *clients, Duration: *duration, Ops: *ops, Warmup: *warmup, KeySize: *keySize,
			ValueSize: *valueSize, Keyspace: *keyspace, KeyDist: load.KeyDist(*keyDist), ReadRatio: *readRatio,
			Preload: *preload, Seed: *seed},
		endpoints: strings.Split(*endpoints, ","), spread: *spread, consistency: *consistency,
		timeout: *timeout, asJSON: *asJSON, plot: *plot, label: *label, watchers: *watchers,
	}
	if set["ops"] && !set["duration"] {
		o.w.Duration = 0
	}
	if err := o.w.Validate(); err != nil {
		return o, err
	}
	if ext := strings.ToLower(filepath.Ext(o.plot)); o.plot != "" && ext != ".html" && ext != ".htm" {
		return o, fmt.Errorf("--plot %q: only .html is supported", o.plot)
	}
	switch o.consistency {
	case "linearizable":
	case "serializable":
		o.getOpts = append(o.getOpts, clientv3.WithSerializable())
	default:
		return o, fmt.Errorf("--consistency %q is not linearizable or serializable", o.consistency)
	}
	return o, nil
}

// targets makes one etcd client over all endpoints (etcd's balancer), or
// one per endpoint with --spread. closeAll closes those made, also after
// an error.
func (o options) targets(acks *load.Acks) (targets []load.Target, closeAll func(), err error) {
	groups := [][]string{o.endpoints}
	if o.spread {
		groups = nil
		for _, ep := range o.endpoints {
			groups = append(groups, []string{ep})
		}
	}
	var clients []*clientv3.Client
	closeAll = func() {
		for _, c := range clients {
			c.Close()
		}
	}
	for _, g := range groups {
		c, err := clientv3.New(clientv3.Config{Endpoints: g, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return nil, closeAll, fmt.Errorf("etcd client for %v: %w", g, err)
		}
		clients = append(clients, c)
		targets = append(targets, &etcdTarget{kv: c.KV, timeout: o.timeout, getOpts: o.getOpts, acks: acks})
	}
	return targets, closeAll, nil
}

// preflight fails fast on a wrong address.
func preflight(ctx context.Context, targets []load.Target, eps []string) error {
	for _, t := range targets {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := t.Get(pctx, []byte("bench-preflight"))
		cancel()
		if err != nil {
			return fmt.Errorf("cannot read from etcd at %v: %w", eps, err)
		}
	}
	return nil
}

// progressOut is stderr when it is a terminal, else nil (no progress).
func progressOut() io.Writer {
	if st, err := os.Stderr.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
		return os.Stderr
	}
	return nil
}

// write prints the result (summary or JSON) and the --plot file.
func (o options) write(res *load.Result) error {
	var err error
	if o.asJSON {
		err = load.WriteJSON(os.Stdout, res)
	} else {
		err = load.WriteSummary(os.Stdout, res)
	}
	if err != nil || o.plot == "" {
		return err
	}
	f, err := os.Create(o.plot)
	if err != nil {
		return err
	}
	if err := load.WritePlot(f, "etcd", []*load.Result{res}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// watchSettle bounds how long watchers may take to open, and to receive
// the last acknowledged put once the load has stopped.
const watchSettle = 30 * time.Second

// watchTargets makes one client per endpoint for the watchers (watcher i
// on endpoint i % len(eps); clientv3 multiplexes the watches of one
// client over one gRPC stream).
func watchTargets(eps []string) (targets []load.WatchTarget, closeAll func(), err error) {
	var cs []*clientv3.Client
	closeAll = func() {
		for _, c := range cs {
			c.Close()
		}
	}
	for _, ep := range eps {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("etcd client for %s: %w", ep, err)
		}
		cs = append(cs, c)
		targets = append(targets, etcdWatchTarget{c})
	}
	return targets, closeAll, nil
}

// etcdWatchTarget watches through clientv3's Watch, from now.
type etcdWatchTarget struct{ c *clientv3.Client }

func (t etcdWatchTarget) Watch(ctx context.Context, prefix []byte, sink *load.WatchSink) error {
	for resp := range t.c.Watch(ctx, string(prefix), clientv3.WithPrefix(), clientv3.WithCreatedNotify()) {
		if err := resp.Err(); err != nil {
			return err
		}
		for _, ev := range resp.Events {
			if ev.Type == clientv3.EventTypePut {
				sink.Event(uint64(ev.Kv.ModRevision), ev.Kv.Key)
			}
		}
		sink.Progress(uint64(resp.Header.Revision))
	}
	return ctx.Err()
}

// etcdTarget runs the workload through clientv3's KV, each call under its
// own timeout as kvd's client does per attempt.
type etcdTarget struct {
	kv      clientv3.KV
	timeout time.Duration
	getOpts []clientv3.OpOption
	acks    *load.Acks // with watchers: every put's acknowledgement
}

func (t *etcdTarget) Put(ctx context.Context, key, value []byte) error {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	sent := time.Now()
	resp, err := t.kv.Put(ctx, string(key), string(value))
	if err == nil && t.acks != nil {
		t.acks.Put(uint64(resp.Header.Revision), key, sent)
	}
	return err
}

func (t *etcdTarget) Get(ctx context.Context, key []byte) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	resp, err := t.kv.Get(ctx, string(key), t.getOpts...)
	if err != nil {
		return false, err
	}
	return len(resp.Kvs) > 0, nil
}
