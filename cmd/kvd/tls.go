package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/kvd-project/kvd/certs"
	"github.com/kvd-project/kvd/server"
)

// issueOwnCert (--issue-cert-from-ca DIR) makes sure the node has a
// certificate from the CA in DIR for every name it is reached by: its
// advertised API and Raft hosts (Dragonboat checks the Raft host), its
// hostname, its interface addresses (DNS discovery dials peers by IP) and
// loopback (health checks inside a container). The
// certificate lives in DATA-DIR/tls and is reused while it still covers
// them; DIR/ca.crt becomes the trusted CA.
func issueOwnCert(cfg *server.Config, caDir string) error {
	if cfg.Node.TLS.CertFile != "" || cfg.Node.TLS.KeyFile != "" || cfg.Node.TLS.CAFile != "" {
		return errors.New("--issue-cert-from-ca replaces --cert-file, --key-file and --trusted-ca-file: give one or the other")
	}
	hosts := []string{"127.0.0.1", "localhost"}
	for _, addr := range []string{cfg.Node.APIAddr, cfg.Node.RaftAddr} {
		if h, _, err := net.SplitHostPort(addr); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
			hosts = append(hosts, h)
		}
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	// Discovery by DNS finds peers by IP address, so the certificate names
	// this host's addresses too (reissued when they change).
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.IsGlobalUnicast() {
				hosts = append(hosts, ipn.IP.String())
			}
		}
	}
	dir := filepath.Join(cfg.Node.DataDir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--issue-cert-from-ca: %w", err)
	}
	certFile, keyFile, err := certs.EnsureIssued(caDir, dir, certs.IssueOptions{Name: "node", Hosts: hosts})
	if err != nil {
		return fmt.Errorf("--issue-cert-from-ca %s: %w", caDir, err)
	}
	cfg.Node.TLS.CertFile, cfg.Node.TLS.KeyFile = certFile, keyFile
	cfg.Node.TLS.CAFile = filepath.Join(caDir, certs.CACertFile)
	return nil
}
