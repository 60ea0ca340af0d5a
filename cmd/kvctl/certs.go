package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/certs"
)

func certsCommand() *cli.Command {
	return &cli.Command{
		Name:  "certs",
		Usage: "make a cluster CA and certificates for TLS (no outside tools needed)",
		UsageText: `kvctl certs ca --out DIR [--days N]
kvctl certs issue --ca DIR --name NAME --host HOST[,HOST...] --out DIR [--days N]`,
		Description: `ca writes a new cluster CA to DIR/ca.crt and DIR/ca.key. issue signs a
certificate with the CA in --ca and writes DIR/NAME.crt and DIR/NAME.key; it
is good both as a node's server certificate (kvd --cert-file, --key-file)
and as a client certificate (kvd between nodes, kvctl --cert, --key). Keys
are ECDSA P-256, written 0600. Neither ever overwrites a file: a second ca
into the same directory is refused, so that a typo cannot replace a
cluster's CA. Give ca.crt to every node (kvd --trusted-ca-file) and client
(kvctl --cacert); keep ca.key where you issue certificates.

A 3-node cluster:
   kvctl certs ca --out tls
   for i in 1 2 3; do kvctl certs issue --ca tls --name kvd-$i --host 127.0.0.1,kvd-$i --out tls; done

These commands touch only files; they talk to no node.`,
		HideHelpCommand: true,
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usageErrorf("kvctl certs: unknown subcommand %q: want ca or issue", c.Args().First())
			}
			return usageErrorf("kvctl certs: missing subcommand: want ca or issue (see kvctl certs --help)")
		},
		Subcommands: []*cli.Command{certsCACommand(), certsIssueCommand()},
	}
}

func certsCACommand() *cli.Command {
	return &cli.Command{
		Name:  "ca",
		Usage: "create a cluster CA: DIR/ca.crt and DIR/ca.key",
		Description: `Creates a new CA (ECDSA P-256) valid for --days, and writes its certificate
to DIR/ca.crt and its key to DIR/ca.key (0600). Refused if either exists.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Usage: "write ca.crt and ca.key into `DIR` (created if missing)"},
			&cli.IntFlag{Name: "days", Value: int(certs.DefaultCAValidity / (24 * time.Hour)),
				Usage: "the CA's validity in `N` days"},
			&cli.BoolFlag{Name: "keep-existing",
				Usage: "if DIR already holds a valid CA (ca.crt and a matching ca.key), keep it and succeed (for one-shot container jobs)"},
		},
		Action: runCertsCA,
	}
}

func certsIssueCommand() *cli.Command {
	return &cli.Command{
		Name:  "issue",
		Usage: "issue a node or client certificate: DIR/NAME.crt and DIR/NAME.key",
		Description: `Signs a certificate (ECDSA P-256) with the CA in --ca, for every DNS name
and IP address in --host (everything peers and clients use to reach the node),
good as server and as client certificate, valid for --days (never past the
CA's own expiry). Writes DIR/NAME.crt and DIR/NAME.key (0600); refused if
either exists. A client-only certificate needs a --host too; any name will do.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "ca", Usage: "the CA's `DIR`, holding ca.crt and ca.key (from kvctl certs ca)"},
			&cli.StringFlag{Name: "name", Usage: "the certificate's `NAME`: its common name and the files' base name"},
			&cli.StringSliceFlag{Name: "host",
				Usage: "DNS names and IP addresses the certificate is good for, `HOST[,HOST...]` (repeatable)"},
			&cli.StringFlag{Name: "out", Usage: "write NAME.crt and NAME.key into `DIR` (created if missing)"},
			&cli.IntFlag{Name: "days", Value: int(certs.DefaultCertValidity / (24 * time.Hour)),
				Usage: "the certificate's validity in `N` days"},
		},
		Action: runCertsIssue,
	}
}

func runCertsCA(c *cli.Context) error {
	if err := wantArgs(c, 0, ""); err != nil {
		return err
	}
	out, days, err := outAndDays(c)
	if err != nil {
		return err
	}
	if c.Bool("keep-existing") {
		if _, _, err := certs.LoadCA(out); err == nil {
			return printWritten(c, filepath.Join(out, certs.CACertFile), filepath.Join(out, certs.CAKeyFile))
		}
	}
	if err := certs.CreateCA(out, certs.CAOptions{Validity: days}); err != nil {
		return certsError(err)
	}
	return printWritten(c, filepath.Join(out, certs.CACertFile), filepath.Join(out, certs.CAKeyFile))
}

func runCertsIssue(c *cli.Context) error {
	if err := wantArgs(c, 0, ""); err != nil {
		return err
	}
	out, days, err := outAndDays(c)
	if err != nil {
		return err
	}
	caDir, name := c.String("ca"), c.String("name")
	var hosts []string
	for _, h := range c.StringSlice("host") {
		for _, part := range strings.Split(h, ",") {
			if part = strings.TrimSpace(part); part != "" {
				hosts = append(hosts, part)
			}
		}
	}
	switch {
	case caDir == "":
		return usageErrorf("kvctl certs issue: missing --ca DIR (the directory of kvctl certs ca)")
	case name == "":
		return usageErrorf("kvctl certs issue: missing --name NAME (e.g. kvd-1)")
	case len(hosts) == 0:
		return usageErrorf("kvctl certs issue: missing --host: give every DNS name and IP address " +
			"the node is reached by, e.g. --host 127.0.0.1,kvd-1")
	}
	err = certs.Issue(caDir, out, certs.IssueOptions{Name: name, Hosts: hosts, Validity: days})
	if err != nil {
		return certsError(err)
	}
	return printWritten(c, filepath.Join(out, name+".crt"), filepath.Join(out, name+".key"))
}

// outAndDays reads --out and --days, which both subcommands take.
func outAndDays(c *cli.Context) (string, time.Duration, error) {
	out := c.String("out")
	if out == "" {
		return "", 0, usageErrorf("kvctl %s: missing --out DIR", commandPath(c))
	}
	days := c.Int("days")
	if days <= 0 {
		return "", 0, usageErrorf("kvctl %s: invalid --days %d: want a positive number of days", commandPath(c), days)
	}
	return out, time.Duration(days) * 24 * time.Hour, nil
}

// certsError maps a certs error to kvctl's exit codes: bad input is a bad
// argument (5); a file that exists is refused like any other error (1).
func certsError(err error) error {
	if errors.Is(err, certs.ErrBadInput) {
		return &exitError{code: exitInvalid, err: err}
	}
	return err
}

// printWritten reads back the certificate just written and prints what
// was written: the paths, the certificate's names and its expiry.
func printWritten(c *cli.Context, certPath, keyPath string) error {
	data, err := os.ReadFile(certPath)
	if err != nil {
		return err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return fmt.Errorf("%s holds no PEM certificate after writing it", certPath)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return fmt.Errorf("%s: %w", certPath, err)
	}
	return newPrinter(c).certWritten(certPath, keyPath, cert)
}
