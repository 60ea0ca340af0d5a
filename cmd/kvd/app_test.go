package main

import (
	cryptotls "crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/certs"
	"github.com/kvd-project/kvd/server"
)

// parse runs the app's flag parsing on args (and the environment) and
// returns the configuration it would start with.
func parse(t *testing.T, args ...string) server.Config {
	t.Helper()
	app := newApp()
	var cfg server.Config
	app.Action = func(c *cli.Context) error {
		var err error
		cfg, err = configFrom(c)
		return err
	}
	if err := app.Run(append([]string{"kvd"}, args...)); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestTLSFlagsReachTheConfig(t *testing.T) {
	cfg := parse(t, "--cert-file", "n.crt", "--key-file", "n.key", "--trusted-ca-file", "ca.crt",
		"--client-cert-auth", "--insecure-open-membership")
	tls := cfg.Node.TLS
	if tls.CertFile != "n.crt" || tls.KeyFile != "n.key" || tls.CAFile != "ca.crt" || !cfg.ClientCertAuth || !cfg.InsecureOpenMembership || !cfg.ReloadOnSIGHUP {
		t.Fatalf("flags not in the config: %+v client-cert-auth=%v insecure=%v sighup=%v", tls, cfg.ClientCertAuth, cfg.InsecureOpenMembership, cfg.ReloadOnSIGHUP)
	}
}

func TestTLSEnvironmentReachesTheConfig(t *testing.T) {
	t.Setenv("KVD_CERT_FILE", "e.crt")
	t.Setenv("KVD_KEY_FILE", "e.key")
	t.Setenv("KVD_TRUSTED_CA_FILE", "eca.crt")
	t.Setenv("KVD_CLIENT_CERT_AUTH", "true")
	t.Setenv("KVD_INSECURE_OPEN_MEMBERSHIP", "true")
	cfg := parse(t)
	tls := cfg.Node.TLS
	if tls.CertFile != "e.crt" || tls.KeyFile != "e.key" || tls.CAFile != "eca.crt" || !cfg.ClientCertAuth || !cfg.InsecureOpenMembership {
		t.Fatalf("environment not in the config: %+v client-cert-auth=%v insecure=%v", tls, cfg.ClientCertAuth, cfg.InsecureOpenMembership)
	}
}

func TestIssueCertFromCA(t *testing.T) {
	ca, data := t.TempDir(), t.TempDir()
	if err := certs.CreateCA(ca, certs.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, "--issue-cert-from-ca", ca, "--data-dir", data, "--listen", "127.0.0.1:0",
		"--advertise-addr", "kvd-a:7070", "--raft-addr", "127.0.0.1:7170", "--advertise-raft-addr", "kvd-a-raft:7170")
	tls := cfg.Node.TLS
	if tls.CAFile != filepath.Join(ca, "ca.crt") || tls.CertFile != filepath.Join(data, "tls", "node.crt") {
		t.Fatalf("config %+v", tls)
	}
	pair, err := cryptotls.LoadX509KeyPair(tls.CertFile, tls.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	for _, h := range []string{"kvd-a", "kvd-a-raft", "127.0.0.1", "localhost"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("issued certificate does not name %s: %v", h, err)
		}
	}
	before, _ := os.ReadFile(tls.CertFile)
	parse(t, "--issue-cert-from-ca", ca, "--data-dir", data, "--listen", "127.0.0.1:0",
		"--advertise-addr", "kvd-a:7070", "--raft-addr", "127.0.0.1:7170", "--advertise-raft-addr", "kvd-a-raft:7170")
	if after, _ := os.ReadFile(tls.CertFile); string(after) != string(before) {
		t.Error("a restart with the same names issued a new certificate")
	}

	app := newApp()
	app.Action = func(c *cli.Context) error { _, err := configFrom(c); return err }
	err = app.Run([]string{"kvd", "--issue-cert-from-ca", ca, "--data-dir", data, "--cert-file", "x.crt", "--key-file", "x.key"})
	if err == nil || !strings.Contains(err.Error(), "--issue-cert-from-ca replaces") {
		t.Fatalf("both ways of TLS at once: %v", err)
	}
}
