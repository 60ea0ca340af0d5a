package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/client"
)

// Exit codes. They are part of kvctl's interface: scripts branch on them,
// so don't renumber them.
const (
	exitOK               = 0
	exitGeneric          = 1 // anything not below
	exitNotFound         = 2 // get: the key does not exist; members promote/remove: no such member
	exitCompareFailed    = 3 // --if-mod-revision did not match
	exitUnavailable      = 4 // no endpoint reachable, no quorum, or a read timed out
	exitInvalid          = 5 // bad usage or an argument the server rejected
	exitOutcomeUnknown   = 6 // a write timed out or lost its connection: it may have been applied
	exitPermissionDenied = 7 // wrong or missing --join-secret
	exitCompacted        = 8 // watch --rev: older than the history the node keeps
)

const exitCodesHelp = `kvctl talks to a kvd cluster through any of its nodes (--endpoints), failing
over to the next one when a node is unreachable or unavailable.

Options may come before or after the arguments:
   kvctl get KEY --consistency serializable -o json

EXIT CODES:
   0  success
   1  other error
   2  key not found (get), or no such member (members promote, members remove)
   3  compare failed: the key's mod revision is not --if-mod-revision
   4  cluster unavailable: no endpoint reachable, no quorum, or a read timed out
   5  invalid usage or argument
   6  outcome unknown: a write timed out or lost its connection and may or may
      not have been applied; read the key before retrying
   7  permission denied: wrong or missing --join-secret
   8  compacted: watch --rev names a revision older than the history the node
      keeps (the message names the oldest one still available)

A refused membership change (it would break the quorum, say) exits with 1
and the server's reason. So do TLS settings that do not fit the cluster's
(a node serves TLS and --cacert is missing, its certificate is not signed
by the --cacert CA, it requires --cert and --key, ...): the message says
what to pass, and the call is not retried on other endpoints.

TLS: with --cacert (or --cert and --key), host:port endpoints mean https://.`

// exitError is an error with the exit code it maps to.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf is an exitInvalid error whose message says what to fix.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitInvalid, err: fmt.Errorf(format, args...)}
}

// exitCode maps an error from app.Run to kvctl's exit code.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, client.ErrTLS):
		return exitGeneric
	case client.OutcomeUnknown(err):
		return exitOutcomeUnknown
	case errors.Is(err, client.ErrPermissionDenied):
		return exitPermissionDenied
	case errors.Is(err, client.ErrNotFound), errors.Is(err, client.ErrNotMember):
		return exitNotFound
	case errors.Is(err, client.ErrCompareFailed):
		return exitCompareFailed
	case errors.Is(err, client.ErrUnavailable), connect.CodeOf(err) == connect.CodeDeadlineExceeded:
		return exitUnavailable
	case errors.Is(err, client.ErrInvalidArgument):
		return exitInvalid
	case errors.Is(err, client.ErrCompacted):
		return exitCompacted
	}
	return exitGeneric
}

// run is main without os.Exit.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	return exitCode(app.Run(permuteArgs(app, args)))
}

// newApp builds the CLI. Errors are printed to stderr by the app itself;
// Run returns them for exitCode.
func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:            "kvctl",
		Usage:           "command-line client for kvd",
		Description:     exitCodesHelp,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideVersion:     true,
		HideHelpCommand: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "endpoints", Value: "127.0.0.1:7070", EnvVars: []string{"KVCTL_ENDPOINTS"},
				Usage: "comma-separated kvd API addresses (host:port, http://host:port or https://host:port)"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second,
				Usage: "time limit for the whole command, retries included"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: outputTable,
				Usage: "output format: table or json"},
			&cli.StringFlag{Name: "protocol", Value: string(client.ProtocolConnect),
				Usage: "wire protocol: connect, grpc or grpcweb"},
			&cli.StringFlag{Name: "join-secret", EnvVars: []string{"KVCTL_JOIN_SECRET"},
				Usage: "the cluster's join secret, needed to change the membership when the cluster has one " +
					"(prefer the environment variable: arguments show in ps)"},
			&cli.StringFlag{Name: "cacert", EnvVars: []string{"KVCTL_CACERT"},
				Usage: "verify the nodes' TLS certificates with the CA certificate in `FILE` (PEM, the ca.crt of " +
					"kvctl certs ca); host:port endpoints then mean https://"},
			&cli.StringFlag{Name: "cert", EnvVars: []string{"KVCTL_CERT"},
				Usage: "TLS client certificate `FILE` (PEM), for a cluster that requires one (kvd --client-cert-auth)"},
			&cli.StringFlag{Name: "key", EnvVars: []string{"KVCTL_KEY"},
				Usage: "the key `FILE` (PEM) of --cert"},
		},
		Commands: []*cli.Command{
			putCommand(), getCommand(), delCommand(), scanCommand(), watchCommand(), membersCommand(), statusCommand(),
			certsCommand(), snapshotCommand(),
		},
		Before: checkGlobalFlags,
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usageErrorf("unknown command %q: see kvctl --help", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		OnUsageError: onUsageError,
		ExitErrHandler: func(_ *cli.Context, err error) {
			if err != nil {
				fmt.Fprintf(stderr, "Error: %v\n", err)
			}
		},
	}
	setOnUsageError(app.Commands)
	return app
}

func setOnUsageError(cmds []*cli.Command) {
	for _, cmd := range cmds {
		cmd.OnUsageError = onUsageError
		setOnUsageError(cmd.Subcommands)
	}
}

// commandPath is the command that runs, with its parents but without
// "kvctl": "get", "members remove".
func commandPath(c *cli.Context) string {
	var names []string
	for _, ctx := range c.Lineage() {
		if ctx.Command != nil && ctx.Command.Name != "" && ctx.Command.Name != ctx.App.Name {
			names = append([]string{ctx.Command.Name}, names...)
		}
	}
	return strings.Join(names, " ")
}

// onUsageError turns a flag parsing error into an exitInvalid error that
// names the command.
func onUsageError(c *cli.Context, err error, isSubcommand bool) error {
	name := "kvctl"
	if p := commandPath(c); isSubcommand && p != "" {
		name += " " + p
	}
	return usageErrorf("%v (see %s --help)", err, name)
}

func checkGlobalFlags(c *cli.Context) error {
	switch o := c.String("output"); o {
	case outputTable, outputJSON:
	default:
		return usageErrorf("invalid --output %q: want table or json", o)
	}
	switch p := client.Protocol(c.String("protocol")); p {
	case client.ProtocolConnect, client.ProtocolGRPC, client.ProtocolGRPCWeb:
	default:
		return usageErrorf("invalid --protocol %q: want connect, grpc or grpcweb", p)
	}
	if d := c.Duration("timeout"); d <= 0 {
		return usageErrorf("invalid --timeout %v: want a positive duration such as 5s", d)
	}
	if len(endpoints(c)) == 0 {
		return usageErrorf("--endpoints is empty: give kvd API addresses, e.g. --endpoints 127.0.0.1:7070")
	}
	return nil
}

func endpoints(c *cli.Context) []string {
	var out []string
	for _, ep := range strings.Split(c.String("endpoints"), ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			out = append(out, ep)
		}
	}
	return out
}

// withClient is the one dial helper: it builds a client from the global
// flags and runs fn under the --timeout for the whole command.
func withClient(c *cli.Context, fn func(ctx context.Context, cl *client.Client) error) error {
	timeout := c.Duration("timeout")
	cfg := client.Config{
		Endpoints: endpoints(c),
		Protocol:  client.Protocol(c.String("protocol")),
		// One attempt may use the whole budget, but no more than the
		// client's default, so that a hung node leaves time to fail over
		// when --timeout is long.
		RequestTimeout: min(timeout, client.DefaultRequestTimeout),
		// A command makes one call or a few in a row: a stream (the
		// client's default) would be opened for one call, which costs a
		// one-shot put about 1 ms more than a unary call
		// (bench/results/grpcbench.md).
		Unary: true,
	}
	tlsCfg, err := tlsConfig(c)
	if err != nil {
		return err
	}
	cfg.TLS = tlsCfg
	if err := cfg.Validate(); err != nil {
		return usageErrorf("invalid --endpoints: %v", err)
	}
	secret := c.String("join-secret")
	cfg.JoinSecret = secret
	cl, err := client.New(cfg)
	if err != nil {
		return usageErrorf("invalid --join-secret: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(c.Context, timeout)
	defer cancel()
	err = fn(ctx, cl)
	if secret == "" && errors.Is(err, client.ErrPermissionDenied) {
		err = fmt.Errorf("%w (no --join-secret or KVCTL_JOIN_SECRET given)", err)
	}
	if errors.Is(err, client.ErrTLS) {
		err = fmt.Errorf("%w [%s]", err, tlsFlags(c))
	}
	return err
}

// tlsConfig builds the client's TLS settings from --cacert, --cert and
// --key: nil when none is given (plaintext, or the system's roots for
// https:// endpoints). A file that cannot serve is a bad argument.
func tlsConfig(c *cli.Context) (*tls.Config, error) {
	ca, cert, key := c.String("cacert"), c.String("cert"), c.String("key")
	if ca == "" && cert == "" && key == "" {
		return nil, nil
	}
	cfg, err := client.TLSFromFiles(ca, cert, key)
	if err != nil {
		return nil, usageErrorf("invalid TLS flags: %v", err)
	}
	return cfg, nil
}

// tlsFlags says which TLS files kvctl used, for a TLS error's message.
func tlsFlags(c *cli.Context) string {
	var parts []string
	for _, f := range []string{"cacert", "cert", "key"} {
		if v := c.String(f); v != "" {
			parts = append(parts, fmt.Sprintf("--%s %s", f, v))
		}
	}
	switch {
	case len(parts) == 0:
		return "no --cacert, --cert or --key given"
	case c.String("cacert") == "":
		parts = append(parts, "no --cacert: the system's roots were trusted")
	}
	return strings.Join(parts, ", ")
}

// wantArgs checks that the command got exactly n arguments, named by usage
// ("KEY VALUE"), and explains the usual mistake of a flag after them.
func wantArgs(c *cli.Context, n int, usage string) error {
	args := c.Args().Slice()
	if len(args) == n {
		return nil
	}
	name := commandPath(c)
	if len(args) > n {
		if n == 0 {
			return usageErrorf("kvctl %s takes no arguments, got %q", name, args)
		}
		for _, a := range args[n:] {
			if strings.HasPrefix(a, "-") && a != "-" {
				return usageErrorf("kvctl %s: option %s after the arguments: options go before them "+
					"(kvctl [global options] %s [options] %s)", name, a, name, usage)
			}
		}
		return usageErrorf("kvctl %s: too many arguments %q: want %s", name, args[n:], usage)
	}
	return usageErrorf("kvctl %s: missing %s (usage: kvctl %s [options] %s)",
		name, strings.Join(strings.Fields(usage)[len(args):], " "), name, usage)
}
