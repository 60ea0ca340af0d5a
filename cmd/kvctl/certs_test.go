package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// certsOut is `kvctl -o json certs ...`.
type certsOut struct {
	Cert     string    `json:"cert"`
	Key      string    `json:"key"`
	Subject  string    `json:"subject"`
	IsCA     bool      `json:"is_ca"`
	Hosts    []string  `json:"hosts"`
	NotAfter time.Time `json:"not_after"`
}

func runCertsJSON(t *testing.T, args ...string) certsOut {
	t.Helper()
	out, errOut, code := runKvctl(t, "", append([]string{"-o", "json"}, args...)...)
	if code != exitOK {
		t.Fatalf("kvctl %v: exit %d, stderr %q", args, code, errOut)
	}
	var res certsOut
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("kvctl %v printed %q: %v", args, out, err)
	}
	return res
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s holds no PEM block", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func checkKeyMode(t *testing.T, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, st.Mode().Perm())
	}
}

// The issued certificate verifies against the CA for every --host, as a
// server and as a client certificate, and -o json says what was written.
func TestCertsCAAndIssue(t *testing.T) {
	caDir, outDir := filepath.Join(t.TempDir(), "ca"), filepath.Join(t.TempDir(), "node")
	ca := runCertsJSON(t, "certs", "ca", "--out", caDir, "--days", "100")
	if ca.Cert != filepath.Join(caDir, "ca.crt") || ca.Key != filepath.Join(caDir, "ca.key") || !ca.IsCA {
		t.Fatalf("certs ca printed %+v", ca)
	}
	if d := time.Until(ca.NotAfter); d < 99*24*time.Hour || d > 100*24*time.Hour {
		t.Errorf("CA valid until %v, want 100 days from now", ca.NotAfter)
	}
	checkKeyMode(t, ca.Key)
	caCert := readCert(t, ca.Cert)
	if !caCert.IsCA || !caCert.NotAfter.Equal(ca.NotAfter) {
		t.Errorf("ca.crt: IsCA %t, not after %v; printed %v", caCert.IsCA, caCert.NotAfter, ca.NotAfter)
	}

	hosts := []string{"127.0.0.1", "kvd-1", "::1", "kvd-1.example.com"}
	res := runCertsJSON(t, "certs", "issue", "--ca", caDir, "--name", "kvd-1",
		"--host", "127.0.0.1,kvd-1", "--host", "::1", "--host", " kvd-1.example.com ", "--out", outDir, "--days", "30")
	if res.Cert != filepath.Join(outDir, "kvd-1.crt") || res.Key != filepath.Join(outDir, "kvd-1.key") ||
		res.IsCA || res.Subject != "kvd-1" {
		t.Fatalf("certs issue printed %+v", res)
	}
	if want := []string{"kvd-1", "kvd-1.example.com", "127.0.0.1", "::1"}; strings.Join(res.Hosts, " ") != strings.Join(want, " ") {
		t.Errorf("hosts %q, want %q", res.Hosts, want)
	}
	if d := time.Until(res.NotAfter); d < 29*24*time.Hour || d > 30*24*time.Hour {
		t.Errorf("certificate valid until %v, want 30 days from now", res.NotAfter)
	}
	checkKeyMode(t, res.Key)
	cert := readCert(t, res.Cert)
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	for _, h := range hosts {
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := cert.Verify(x509.VerifyOptions{DNSName: h, Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("verify for %s (usage %v): %v", h, usage, err)
			}
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "kvd-2", Roots: roots}); err == nil {
		t.Error("the certificate verifies for kvd-2, which is not one of its hosts")
	}

	out, _, code := runKvctl(t, "", "certs", "issue", "--ca", caDir, "--name", "kvctl", "--host", "kvctl", "--out", outDir)
	if code != exitOK || !strings.HasPrefix(out, "wrote "+filepath.Join(outDir, "kvctl.crt")+" and "+
		filepath.Join(outDir, "kvctl.key")+`: certificate "kvctl" for kvctl, valid until `) {
		t.Errorf("certs issue printed %q (exit %d)", out, code)
	}
}

// A second `certs ca` into the same directory is refused and leaves the
// CA as it was; so is a second certificate of one name.
func TestCertsNeverOverwrite(t *testing.T) {
	dir := t.TempDir()
	if _, errOut, code := runKvctl(t, "", "certs", "ca", "--out", dir); code != exitOK {
		t.Fatalf("certs ca: exit %d, %s", code, errOut)
	}
	key, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	crt, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runKvctl(t, "", "certs", "ca", "--out", dir)
	if code != exitGeneric || out != "" || !strings.Contains(errOut, "file exists") ||
		!strings.Contains(errOut, "never overwrites") {
		t.Errorf("second certs ca: exit %d, stdout %q, stderr %q; want exit 1 and a refusal", code, out, errOut)
	}
	if k, _ := os.ReadFile(filepath.Join(dir, "ca.key")); !bytes.Equal(k, key) {
		t.Error("the second certs ca changed ca.key")
	}
	if c, _ := os.ReadFile(filepath.Join(dir, "ca.crt")); !bytes.Equal(c, crt) {
		t.Error("the second certs ca changed ca.crt")
	}
	if _, errOut, code := runKvctl(t, "", "certs", "ca", "--out", dir, "--keep-existing"); code != exitOK {
		t.Errorf("certs ca --keep-existing on a valid CA: exit %d, %s", code, errOut)
	}
	if k, _ := os.ReadFile(filepath.Join(dir, "ca.key")); !bytes.Equal(k, key) {
		t.Error("certs ca --keep-existing changed ca.key")
	}
	broken := t.TempDir()
	os.WriteFile(filepath.Join(broken, "ca.crt"), []byte("not a certificate"), 0o644)
	if _, _, code := runKvctl(t, "", "certs", "ca", "--out", broken, "--keep-existing"); code != exitGeneric {
		t.Errorf("certs ca --keep-existing over a broken ca.crt: exit %d, want 1 (never overwritten)", code)
	}

	issue := []string{"certs", "issue", "--ca", dir, "--name", "n1", "--host", "127.0.0.1", "--out", dir}
	if _, errOut, code := runKvctl(t, "", issue...); code != exitOK {
		t.Fatalf("certs issue: exit %d, %s", code, errOut)
	}
	nkey, _ := os.ReadFile(filepath.Join(dir, "n1.key"))
	if _, errOut, code := runKvctl(t, "", issue...); code != exitGeneric || !strings.Contains(errOut, "file exists") {
		t.Errorf("second certs issue: exit %d, stderr %q", code, errOut)
	}
	if k, _ := os.ReadFile(filepath.Join(dir, "n1.key")); !bytes.Equal(k, nkey) {
		t.Error("the second certs issue changed n1.key")
	}
}

func TestCertsUsageErrors(t *testing.T) {
	dir := t.TempDir()
	if _, errOut, code := runKvctl(t, "", "certs", "ca", "--out", dir); code != exitOK {
		t.Fatalf("certs ca: exit %d, %s", code, errOut)
	}
	empty := t.TempDir()
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no subcommand", []string{"certs"}, exitInvalid, "kvctl certs: missing subcommand: want ca or issue"},
		{"unknown subcommand", []string{"certs", "frob"}, exitInvalid, `unknown subcommand "frob"`},
		{"ca without --out", []string{"certs", "ca"}, exitInvalid, "kvctl certs ca: missing --out DIR"},
		{"ca with zero days", []string{"certs", "ca", "--out", empty, "--days", "0"}, exitInvalid, "invalid --days 0"},
		{"ca with an argument", []string{"certs", "ca", "--out", empty, "x"}, exitInvalid, "takes no arguments"},
		{"issue without --ca", []string{"certs", "issue", "--name", "n", "--host", "h", "--out", empty},
			exitInvalid, "missing --ca DIR"},
		{"issue without --name", []string{"certs", "issue", "--ca", dir, "--host", "h", "--out", empty},
			exitInvalid, "missing --name NAME"},
		{"issue without --host", []string{"certs", "issue", "--ca", dir, "--name", "n", "--out", empty},
			exitInvalid, "missing --host"},
		{"issue named ca", []string{"certs", "issue", "--ca", dir, "--name", "ca", "--host", "h", "--out", empty},
			exitInvalid, `certificate name "ca"`},
		{"issue for a bad host", []string{"certs", "issue", "--ca", dir, "--name", "n", "--host", "a b", "--out", empty},
			exitInvalid, `host "a b" is neither an IP address nor a DNS name`},
		{"issue without a CA", []string{"certs", "issue", "--ca", empty, "--name", "n", "--host", "h", "--out", empty},
			exitGeneric, "create one with: kvctl certs ca --out " + empty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runKvctl(t, "", tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.stderr) || out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, out, errOut, tt.code, tt.stderr)
			}
		})
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("failed commands left files: %v", entries)
	}
}
