package main

import (
	"testing"

	"github.com/urfave/cli/v2"

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
