package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestIssuedCertificateVerifiesAsServerAndClient(t *testing.T) {
	dir := t.TempDir()
	if err := CreateCA(dir, CAOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := Issue(dir, dir, IssueOptions{Name: "kvd-1", Hosts: []string{"127.0.0.1", "kvd-1", "::1"}}); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "kvd-1.crt"), filepath.Join(dir, "kvd-1.key"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt not PEM")
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		for _, host := range []string{"127.0.0.1", "kvd-1", "::1"} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("usage %v host %s: %v", usage, host, err)
			}
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "kvd-2"}); err == nil {
		t.Error("certificate verified for a host it was not issued for")
	}
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got < 364*24*time.Hour || got > 366*24*time.Hour {
		t.Errorf("validity %s, want about a year", got)
	}
	for _, f := range []string{CAKeyFile, "kvd-1.key"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
}

func TestAnotherCAIsNotTrusted(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		if err := CreateCA(d, CAOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := Issue(b, b, IssueOptions{Name: "stranger", Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(b, "stranger.crt"), filepath.Join(b, "stranger.key"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	caA, _, err := LoadCA(a)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caA)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool}); err == nil {
		t.Fatal("a certificate of another CA verified")
	}
}

func TestNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	if err := CreateCA(dir, CAOptions{}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err := CreateCA(dir, CAOptions{}); !errors.Is(err, ErrExists) {
		t.Fatalf("second CreateCA: %v, want ErrExists", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if string(before) != string(after) {
		t.Fatal("CA key changed")
	}
	if err := Issue(dir, dir, IssueOptions{Name: "n", Hosts: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if err := Issue(dir, dir, IssueOptions{Name: "n", Hosts: []string{"a"}}); !errors.Is(err, ErrExists) {
		t.Fatalf("second Issue: %v, want ErrExists", err)
	}
}

func TestIssueRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	if err := CreateCA(dir, CAOptions{}); err != nil {
		t.Fatal(err)
	}
	cases := []IssueOptions{
		{Name: "", Hosts: []string{"a"}},
		{Name: "ca", Hosts: []string{"a"}},
		{Name: "../x", Hosts: []string{"a"}},
		{Name: "n"},
		{Name: "n", Hosts: []string{"host:7070"}},
	}
	for _, c := range cases {
		err := Issue(dir, dir, c)
		if !errors.Is(err, ErrBadInput) {
			t.Errorf("%+v: %v, want ErrBadInput", c, err)
		}
	}
	if err := Issue(t.TempDir(), dir, IssueOptions{Name: "n", Hosts: []string{"a"}}); err == nil || !strings.Contains(err.Error(), "kvctl certs ca") {
		t.Errorf("missing CA: %v, want a hint to create one", err)
	}
}

func TestCertificateEndsWithCA(t *testing.T) {
	dir := t.TempDir()
	now := func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }
	if err := CreateCA(dir, CAOptions{Validity: 30 * 24 * time.Hour, Now: now}); err != nil {
		t.Fatal(err)
	}
	if err := Issue(dir, dir, IssueOptions{Name: "n", Hosts: []string{"a"}, Now: now}); err != nil {
		t.Fatal(err)
	}
	ca, _, _ := LoadCA(dir)
	pair, _ := tls.LoadX509KeyPair(filepath.Join(dir, "n.crt"), filepath.Join(dir, "n.key"))
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if leaf.NotAfter.After(ca.NotAfter) {
		t.Fatalf("leaf ends %s after its CA %s", leaf.NotAfter, ca.NotAfter)
	}
}

func TestEnsureIssuedReusesOrReissues(t *testing.T) {
	ca, out := t.TempDir(), t.TempDir()
	if err := CreateCA(ca, CAOptions{}); err != nil {
		t.Fatal(err)
	}
	c1, k1, err := EnsureIssued(ca, out, IssueOptions{Name: "node", Hosts: []string{"a", "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(c1)
	if _, _, err := EnsureIssued(ca, out, IssueOptions{Name: "node", Hosts: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(c1); string(again) != string(first) {
		t.Fatal("a certificate that covers the hosts was reissued")
	}
	if _, _, err := EnsureIssued(ca, out, IssueOptions{Name: "node", Hosts: []string{"a", "b"}}); err != nil {
		t.Fatal(err)
	}
	third, _ := os.ReadFile(c1)
	if string(third) == string(first) {
		t.Fatal("a certificate missing host b was kept")
	}
	if _, err := os.Stat(c1 + ".old"); err != nil {
		t.Fatalf("old certificate not kept aside: %v", err)
	}
	pair, err := tls.LoadX509KeyPair(c1, k1)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if leaf.VerifyHostname("b") != nil || leaf.VerifyHostname("a") != nil {
		t.Fatalf("new certificate names %v", leaf.DNSNames)
	}
	// Signed by another CA: reissued from ours.
	other := t.TempDir()
	if err := CreateCA(other, CAOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := EnsureIssued(other, out, IssueOptions{Name: "node", Hosts: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if fourth, _ := os.ReadFile(c1); string(fourth) == string(third) {
		t.Fatal("a certificate of another CA was kept")
	}
}
