// Command bench is kvd's closed-loop load generator: N workers, each with one
// call in flight through the Go client, for a duration or a number of
// operations, after an unmeasured warmup. It prints throughput, errors and
// exact latency percentiles (every latency is kept), as text or one JSON
// object, and can draw them over time into an HTML page.
//
//	go run ./bench --endpoints 127.0.0.1:7070 --clients 64 --duration 10s
//	go run ./bench --clients 16 --read-ratio 1 --preload --json
//	go run ./bench ceiling --clients 64      # the RPC layer's own ceiling
//	go run ./bench --protocol grpc-go --spread # a plain grpc-go client, as etcd's
//
// The measuring loop lives in bench/load, shared with bench/etcd, the same
// generator for etcd. See bench/README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/bench/load"
	"github.com/kvd-project/kvd/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newApp(os.Stdout, os.Stderr).RunContext(ctx, os.Args)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:  "bench",
		Usage: "closed-loop load generator for kvd",
		UsageText: "bench [flags]              load a kvd cluster\n" +
			"   bench ceiling [flags]      measure the RPC ceiling with an in-process no-op server\n" +
			"   bench table FILE...        compare JSON results (kvd, ceiling, etcd) in one table",
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: append(loadFlags(),
			&cli.StringFlag{Name: "endpoints", Value: "127.0.0.1:7070", EnvVars: []string{"KVCTL_ENDPOINTS"}, Usage: "kvd API addresses, comma-separated"},
			&cli.BoolFlag{Name: "spread", Usage: "one client per endpoint, workers spread over them round-robin (like etcd's balancer); default: one client on the first endpoint, failing over to the next"},
			&cli.StringFlag{Name: "consistency", Value: "linearizable", Usage: "consistency of gets: linearizable or serializable"},
			&cli.StringFlag{Name: "protocol", Value: "connect", Usage: "connect, grpc or grpcweb (through kvd's Go client), or grpc-go (grpc-go's own transport and the generated stubs, one HTTP/2 connection per node, like etcd's client)"},
			&cli.BoolFlag{Name: "unary", Usage: "send every put and get as a request of its own (client.Config.Unary); default: over one bidirectional stream per node (kvd.v1.KV/Stream, HTTP/2), the client's default, where concurrent calls share messages and Raft entries"},
			&cli.StringFlag{Name: "transport", Usage: "with --unary: http1 (keep-alive pool) or h2c (one HTTP/2 connection per endpoint); default: http1 for connect and grpcweb, h2c for grpc"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "timeout of each call attempt"},
			&cli.BoolFlag{Name: "prefer-leader", Usage: "each client sends its calls to the leader when it is one of its endpoints (client.Config.PreferLeader)"},
			&cli.BoolFlag{Name: "any-node-writes", Usage: "puts go to each client's current endpoint like gets (client.Config.AnyNodeWrites); default: to the leader, as the Go client does"},
			&cli.IntFlag{Name: "watchers", Usage: "open `N` watches of the bench's keys (prefix \"k\") during the load, spread over every member of the cluster, and report events/s and the latency from a put's acknowledgement to its event"},
			&cli.BoolFlag{Name: "watch-observers", Usage: "with --watchers: watch on the observers only (none: an error)"},
			&cli.StringFlag{Name: "cacert", EnvVars: []string{"KVCTL_CACERT"}, Usage: "TLS: verify the nodes with the CA certificate in `FILE`; host:port endpoints then mean https"},
			&cli.StringFlag{Name: "cert", EnvVars: []string{"KVCTL_CERT"}, Usage: "TLS client certificate `FILE`, for a cluster that requires one"},
			&cli.StringFlag{Name: "key", EnvVars: []string{"KVCTL_KEY"}, Usage: "the key `FILE` of --cert"},
		),
		Commands:        []*cli.Command{ceilingCommand(stdout, stderr), tableCommand(stdout)},
		Action:          func(c *cli.Context) error { return runKV(c, stdout, stderr) },
		HideHelpCommand: true,
	}
}

// loadFlags are the workload flags of both the kvd run and the ceiling.
func loadFlags() []cli.Flag {
	d := load.DefaultWorkload()
	return []cli.Flag{
		&cli.IntFlag{Name: "clients", Aliases: []string{"c"}, Value: d.Clients, Usage: "concurrent workers, each with one call in flight"},
		&cli.DurationFlag{Name: "duration", Aliases: []string{"d"}, Value: d.Duration, Usage: "how long to measure (not with --ops)"},
		&cli.Int64Flag{Name: "ops", Usage: "measure this many operations instead of a duration"},
		&cli.DurationFlag{Name: "warmup", Value: d.Warmup, Usage: "unmeasured load before measuring"},
		&cli.IntFlag{Name: "key-size", Value: d.KeySize, Usage: "key size in bytes"},
		&cli.IntFlag{Name: "value-size", Value: d.ValueSize, Usage: "value size in bytes"},
		&cli.IntFlag{Name: "keyspace", Value: d.Keyspace, Usage: "number of distinct keys"},
		&cli.StringFlag{Name: "key-dist", Value: string(d.KeyDist), Usage: "uniform or sequential"},
		&cli.Float64Flag{Name: "read-ratio", Value: d.ReadRatio, Usage: "fraction of operations that are gets (0..1)"},
		&cli.BoolFlag{Name: "preload", Usage: "first write every key of the keyspace once (unmeasured), so that gets find them"},
		&cli.Uint64Flag{Name: "seed", Value: d.Seed, Usage: "seed of keys, values and the read/write mix"},
		&cli.BoolFlag{Name: "json", Usage: "print one JSON object instead of the summary"},
		&cli.StringFlag{Name: "plot", Usage: "write throughput and latency over time to this .html file (inline SVG)"},
		&cli.StringFlag{Name: "label", Usage: "tag the results with this label (bench table pairs runs with the same label)"},
	}
}

// workloadFrom reads and validates the workload flags.
func workloadFrom(c *cli.Context) (load.Workload, error) {
	w := load.DefaultWorkload()
	w.Clients = c.Int("clients")
	w.Duration = c.Duration("duration")
	w.Ops = c.Int64("ops")
	if c.IsSet("ops") && !c.IsSet("duration") {
		w.Duration = 0
	}
	w.Warmup = c.Duration("warmup")
	w.KeySize = c.Int("key-size")
	w.ValueSize = c.Int("value-size")
	w.Keyspace = c.Int("keyspace")
	w.KeyDist = load.KeyDist(c.String("key-dist"))
	w.ReadRatio = c.Float64("read-ratio")
	w.Preload = c.Bool("preload")
	w.Seed = c.Uint64("seed")
	if err := w.Validate(); err != nil {
		return w, err
	}
	if err := checkPlotPath(c.String("plot")); err != nil {
		return w, err
	}
	return w, nil
}

func checkPlotPath(p string) error {
	if p == "" {
		return nil
	}
	switch strings.ToLower(filepath.Ext(p)) {
	case ".html", ".htm":
		return nil
	}
	return fmt.Errorf("--plot %q: only .html is supported (a page with inline SVG, no external assets)", p)
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// label names what the result measured: kvd, the endpoints, the protocol
// and transport (with TLS and leader preference), the read consistency.
func (o dialOptions) label(res *load.Result, w load.Workload) {
	res.Mode = "kvd"
	res.Target = strings.Join(o.Endpoints, ",")
	res.Protocol, res.Transport = o.Protocol, o.transport()
	if o.tls() {
		res.Transport += tlsSuffix
	}
	if o.Leader {
		res.Transport += leaderSuffix
	}
	if o.AnyNode {
		res.Transport += anyNodeSuffix
	}
	if w.ReadRatio > 0 {
		res.Consistency = o.Consistency
	}
}

func runKV(c *cli.Context, stdout, stderr io.Writer) error {
	if c.Args().Present() {
		return fmt.Errorf("unexpected argument %q (commands: ceiling, table)", c.Args().First())
	}
	w, err := workloadFrom(c)
	if err != nil {
		return err
	}
	o, err := dialOptionsFrom(c)
	if err != nil {
		return err
	}
	targets, closeAll, err := newTargets(o)
	if err != nil {
		return err
	}
	defer closeAll()
	if err := preflight(c.Context, targets, o.Endpoints); err != nil {
		return err
	}
	watch, err := startKVWatchers(c, o, targets)
	if err != nil {
		return err
	}
	if watch != nil {
		defer watch.close()
	}
	res, err := load.Run(c.Context, w, targets, progressWriter(stderr))
	if err != nil {
		return err
	}
	var watchErr error
	if watch != nil {
		watchErr = watch.finish(res)
	}
	o.label(res, w)
	if err := report(c, stdout, "kvd", []*load.Result{res}); err != nil {
		return err
	}
	if watchErr != nil {
		return fmt.Errorf("watchers: %w", watchErr)
	}
	return nil
}

// dialOptionsFrom reads and checks how bench reaches kvd: endpoints,
// protocol, transport, client settings and TLS.
func dialOptionsFrom(c *cli.Context) (dialOptions, error) {
	o := dialOptions{
		Endpoints:   splitList(c.String("endpoints")),
		Protocol:    c.String("protocol"),
		Transport:   c.String("transport"),
		Consistency: c.String("consistency"),
		Spread:      c.Bool("spread"),
		Unary:       c.Bool("unary"),
		Leader:      c.Bool("prefer-leader"),
		AnyNode:     c.Bool("any-node-writes"),
		Timeout:     c.Duration("timeout"),
	}
	if err := o.validate(); err != nil {
		return o, err
	}
	if o.Protocol == protocolGRPCGo && c.Int("watchers") > 0 {
		return o, errGRPCGoOnly
	}
	if c.String("cacert") != "" || c.String("cert") != "" || c.String("key") != "" {
		var err error
		if o.TLS, err = client.TLSFromFiles(c.String("cacert"), c.String("cert"), c.String("key")); err != nil {
			return o, err
		}
	}
	return o, nil
}

// report prints each result (JSON Lines with --json) and writes the plot.
func report(c *cli.Context, stdout io.Writer, title string, results []*load.Result) error {
	for _, r := range results {
		r.Label = c.String("label")
		var err error
		if c.Bool("json") {
			err = load.WriteJSON(stdout, r)
		} else {
			err = load.WriteSummary(stdout, r)
		}
		if err != nil {
			return err
		}
	}
	if p := c.String("plot"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		if err := load.WritePlot(f, title, results); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if c.Context.Err() != nil {
		return errors.New("interrupted: the figures above cover only the time measured")
	}
	return nil
}

// progressWriter is w when it is a terminal, else nil: a progress line
// rewritten with carriage returns only garbles logs and pipes.
func progressWriter(w io.Writer) io.Writer {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return w
}
