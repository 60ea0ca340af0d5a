package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// TLSFromFiles builds a Config.TLS from PEM files: caFile holds the CA
// certificate(s) that sign the nodes' certificates (kvctl certs ca writes
// ca.crt; "" trusts the system's roots instead), certFile and keyFile a
// client certificate and its key, for a cluster that requires one (kvd
// --client-cert-auth); give both or neither. Every error names the file and
// what is wrong with it.
func TLSFromFiles(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := loadCAFile(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile == "" && keyFile == "":
		return cfg, nil
	case certFile == "":
		return nil, fmt.Errorf("client: a client key (%s) needs its certificate too: give the certificate file (kvctl --cert)", keyFile)
	case keyFile == "":
		return nil, fmt.Errorf("client: a client certificate (%s) needs its key too: give the key file (kvctl --key)", certFile)
	}
	cert, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cfg.Certificates = []tls.Certificate{cert}
	return cfg, nil
}

// loadCAFile reads the CA certificates of caFile into a pool.
func loadCAFile(caFile string) (*x509.CertPool, error) {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("client: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			if strings.Contains(b.Type, "PRIVATE KEY") {
				return nil, fmt.Errorf("client: CA file %s holds a private key: give the CA's certificate (ca.crt), "+
					"and keep its key (ca.key) off the clients", caFile)
			}
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("client: CA file %s: certificate %d: %v", caFile, n+1, err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("client: CA file %s holds %q, which is not a CA certificate: "+
				"give the certificate of the CA that signed the nodes' certificates (ca.crt)", caFile, c.Subject.CommonName)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("client: CA file %s holds no PEM certificate: give the cluster's ca.crt", caFile)
	}
	return pool, nil
}

// loadKeyPair reads a client certificate and its key, and checks that the
// certificate can authenticate a client now.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("client: client certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("client: client key: %w", err)
	}
	if b, _ := pem.Decode(certPEM); b == nil || b.Type != "CERTIFICATE" {
		return tls.Certificate{}, fmt.Errorf("client: client certificate %s holds no PEM certificate "+
			"(is it the key? the certificate is NAME.crt)", certFile)
	}
	if b, _ := pem.Decode(keyPEM); b == nil || !strings.Contains(b.Type, "PRIVATE KEY") {
		return tls.Certificate{}, fmt.Errorf("client: client key %s holds no PEM private key "+
			"(is it the certificate? the key is NAME.key)", keyFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("client: client key %s does not fit certificate %s: %v", keyFile, certFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("client: client certificate %s: %v", certFile, err)
		}
	}
	if now := time.Now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return tls.Certificate{}, fmt.Errorf("client: client certificate %s is valid from %s to %s, not now: issue a new one",
			certFile, leaf.NotBefore.UTC().Format(time.DateOnly), leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) &&
		!slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return tls.Certificate{}, fmt.Errorf("client: client certificate %s is not good for client authentication "+
			"(its extended key usage lacks clientAuth): issue one with kvctl certs issue", certFile)
	}
	return cert, nil
}

// The two mismatches a probe of the node finds (see diagnose).
var (
	errServesTLS = errors.New("the node serves TLS: use https:// endpoints and --cacert")
	errNoTLS     = errors.New("the node does not serve TLS: use http:// endpoints (and no --cacert)")
)

// tlsMismatch is an attempt's error with the mismatch diagnose found. It
// prints as the attempt's own error; tlsProblem gives the hint.
type tlsMismatch struct {
	hint error // errServesTLS, errNoTLS, or the probe's handshake error
	err  error
}

func (e *tlsMismatch) Error() string   { return e.err.Error() }
func (e *tlsMismatch) Unwrap() []error { return []error{e.hint, e.err} }

// tlsProblem says what to fix when err comes from TLS settings that do not
// fit the node's ("" when it does not): the node's certificate is not
// trusted or not for this name, the node wants a client certificate, or one
// side speaks TLS and the other does not. These are the same on every retry.
func tlsProblem(err error) string {
	if err == nil {
		return ""
	}
	switch {
	case errors.Is(err, errServesTLS):
		return errServesTLS.Error()
	case errors.Is(err, errNoTLS):
		return errNoTLS.Error()
	}
	var (
		unknownCA x509.UnknownAuthorityError
		host      x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
		op        *net.OpError
	)
	switch {
	case errors.As(err, &unknownCA):
		return "the node's certificate is not signed by a CA in --cacert (Config.TLS.RootCAs): " +
			"give the cluster's CA certificate (ca.crt)"
	case errors.As(err, &host):
		return fmt.Sprintf("the node's certificate is not valid for %q: use an endpoint name the certificate lists "+
			"(%s), or issue it with that name in --host", host.Host, certNames(host.Certificate))
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "the node's certificate has expired or is not valid yet: issue it a new one (kvctl certs issue)"
	case errors.As(err, &invalid):
		return "the node's certificate cannot serve TLS to a client: issue it a new one (kvctl certs issue)"
	case errors.As(err, &record):
		return errNoTLS.Error()
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		// net/http's words for a tls.RecordHeaderError that looks like
		// HTTP; it keeps no typed error to test.
		return errNoTLS.Error()
	case errors.As(err, &op) && op.Op == "remote error":
		// An alert from the node during or just after the handshake. Go
		// exports no type for a received alert; its text is fixed.
		switch op.Err.Error() {
		case "tls: certificate required":
			return "the node requires a client certificate: pass --cert and --key (Config.TLS.Certificates)"
		case "tls: bad certificate", "tls: unknown certificate authority", "tls: certificate unknown",
			"tls: unsupported certificate", "tls: expired certificate":
			return "the node refused the client certificate: pass a --cert and --key issued by the cluster's CA " +
				"(kvctl certs issue), still valid"
		}
	}
	return ""
}

// certNames lists the names and addresses a certificate is good for.
func certNames(c *x509.Certificate) string {
	if c == nil {
		return "none"
	}
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// diagnose finds out whether an attempt that failed without an answer from
// the server failed because of TLS settings that the error does not show:
// a plaintext HTTP/1.1 request to a TLS node gets "400 Bad Request", an h2c
// preface is met with a closed connection, and a node that refuses the
// client's certificate after a TLS 1.3 handshake may close the connection
// before the client reads its alert ("broken pipe"). It dials the node
// once and offers a handshake: for an http:// endpoint, one that verifies
// nothing (does the node speak TLS at all?); for https://, the client's
// own (own is nil when the caller brought its own HTTPClient, whose
// settings are unknown here: then only whether the node speaks TLS is
// asked), followed by a short read for an alert refusing the client's
// certificate. It returns the error the attempt should report, or nil to
// keep the attempt's own.
func diagnose(ctx context.Context, base string, own *tls.Config, ownKnown bool, timeout time.Duration) error {
	u, err := url.Parse(base)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil // nothing listens: not a TLS mismatch
	}
	defer conn.Close()
	// InsecureSkipVerify when only asking whether the node speaks TLS:
	// nothing is sent over this connection.
	cfg := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // a probe, see above
	if u.Scheme == "https" && ownKnown {
		if own != nil {
			cfg = own.Clone()
		} else {
			cfg = &tls.Config{} // the system's roots, as the transport uses
		}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	// Offering h2 makes an HTTP/2 node speak first (its SETTINGS), so a
	// healthy node ends the read below at once.
	cfg.NextProtos = []string{"h2", "http/1.1"}
	tc := tls.Client(conn, cfg)
	err = tc.HandshakeContext(ctx)
	var record tls.RecordHeaderError
	switch {
	case u.Scheme == "http" && err == nil:
		return errServesTLS
	case u.Scheme == "http":
		return nil
	case errors.As(err, &record):
		return errNoTLS
	case err != nil && tlsProblem(err) != "":
		return err
	case err != nil || cfg.InsecureSkipVerify:
		return nil
	}
	// TLS 1.3: the node checks the client's certificate after the client's
	// side of the handshake is done, and says no with an alert.
	_ = tc.SetReadDeadline(time.Now().Add(min(timeout, 300*time.Millisecond)))
	if _, err := tc.Read(make([]byte, 1)); tlsProblem(err) != "" {
		return err
	}
	return nil
}
