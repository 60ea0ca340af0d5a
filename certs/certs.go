// Package certs makes the certificates a kvd cluster needs without outside
// tools (like `consul tls ca create` / `consul tls cert create`): a cluster
// CA, and certificates signed by it that serve both as server and as client
// certificates (nodes dial each other with them: Raft's mutual TLS and the
// API calls between members). Standard library crypto only: ECDSA P-256.
//
// Files are PEM: DIR/ca.crt and DIR/ca.key for the CA, DIR/NAME.crt and
// DIR/NAME.key for an issued certificate. Private keys are written 0600,
// through a temp file and a rename, and never overwritten: a second CreateCA
// or Issue into the same place is refused, so that a typo cannot replace a
// cluster's CA.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Default validity periods (consul's defaults: a CA for 5 years, a leaf
// certificate for 1 year).
const (
	DefaultCAValidity   = 5 * 365 * 24 * time.Hour
	DefaultCertValidity = 365 * 24 * time.Hour
)

// File names inside a CA directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

var (
	// ErrExists: the target file exists; certs never overwrites one.
	ErrExists = errors.New("certs: file exists")
	// ErrBadInput: a name, host or file is not usable.
	ErrBadInput = errors.New("certs: bad input")
)

// CAOptions configure CreateCA; zero values take the defaults.
type CAOptions struct {
	CommonName string        // default "kvd cluster CA"
	Validity   time.Duration // default DefaultCAValidity
	Now        func() time.Time
}

// CreateCA writes a new CA to dir/ca.crt and dir/ca.key.
func CreateCA(dir string, opts CAOptions) error {
	if opts.CommonName == "" {
		opts.CommonName = "kvd cluster CA"
	}
	if opts.Validity <= 0 {
		opts.Validity = DefaultCAValidity
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	if err := refuseExisting(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	start := now().Add(-time.Minute) // tolerate small clock skew between nodes
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: opts.CommonName, Organization: []string{"kvd"}},
		NotBefore:             start,
		NotAfter:              start.Add(opts.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	return writePair(dir, CACertFile, CAKeyFile, der, key)
}

// IssueOptions configure Issue; Name and Hosts are required.
type IssueOptions struct {
	// Name is the certificate's common name and the files' base name.
	Name string
	// Hosts are the DNS names and IP addresses the certificate is good for
	// (its subject alternative names): every name or address that peers
	// and clients use to reach the node.
	Hosts    []string
	Validity time.Duration // default DefaultCertValidity
	Now      func() time.Time
}

// Issue signs a certificate with the CA in caDir and writes it to
// outDir/NAME.crt and outDir/NAME.key. The certificate is good for both
// server and client authentication.
func Issue(caDir, outDir string, opts IssueOptions) error {
	if opts.Name == "" || strings.ContainsAny(opts.Name, `/\`) || opts.Name == "." || opts.Name == ".." || opts.Name == "ca" {
		return fmt.Errorf("%w: certificate name %q: use a plain name such as kvd-1 (not \"ca\", no slashes)", ErrBadInput, opts.Name)
	}
	if len(opts.Hosts) == 0 {
		return fmt.Errorf("%w: no hosts: give every DNS name and IP address the node is reached by (--host 127.0.0.1,kvd-1)", ErrBadInput)
	}
	if opts.Validity <= 0 {
		opts.Validity = DefaultCertValidity
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	caCert, caKey, err := LoadCA(caDir)
	if err != nil {
		return err
	}
	certPath, keyPath := filepath.Join(outDir, opts.Name+".crt"), filepath.Join(outDir, opts.Name+".key")
	if err := refuseExisting(certPath, keyPath); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	start := now().Add(-time.Minute)
	end := start.Add(opts.Validity)
	if end.After(caCert.NotAfter) {
		end = caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{CommonName: opts.Name, Organization: []string{"kvd"}},
		NotBefore:      start,
		NotAfter:       end,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		SubjectKeyId:   keyID(&key.PublicKey),
		AuthorityKeyId: caCert.SubjectKeyId,
	}
	for _, h := range opts.Hosts {
		h = strings.TrimSpace(h)
		switch {
		case h == "":
			continue
		case net.ParseIP(h) != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(h))
		case strings.ContainsAny(h, " /:@"):
			return fmt.Errorf("%w: host %q is neither an IP address nor a DNS name", ErrBadInput, h)
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	return writePair(outDir, opts.Name+".crt", opts.Name+".key", der, key)
}

// LoadCA reads dir/ca.crt and dir/ca.key.
func LoadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, nil, fmt.Errorf("certs: read the CA certificate: %w (create one with: kvctl certs ca --out %s)", err, dir)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("certs: read the CA key: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrBadInput, filepath.Join(dir, CACertFile))
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrBadInput, filepath.Join(dir, CACertFile), err)
	}
	if !cert.IsCA {
		return nil, nil, fmt.Errorf("%w: %s is not a CA certificate", ErrBadInput, filepath.Join(dir, CACertFile))
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, fmt.Errorf("%w: %s holds no PEM key", ErrBadInput, filepath.Join(dir, CAKeyFile))
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrBadInput, filepath.Join(dir, CAKeyFile), err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%w: %s does not match %s", ErrBadInput, filepath.Join(dir, CAKeyFile), filepath.Join(dir, CACertFile))
	}
	return cert, key, nil
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func keyID(pub *ecdsa.PublicKey) []byte {
	b, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(b)
	return sum[:20]
}

func refuseExisting(paths ...string) error {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%w: %s (certs never overwrites a certificate or key; move it away first)", ErrExists, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func writePair(dir, certName, keyName string, der []byte, key *ecdsa.PrivateKey) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFile(dir, keyName, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return writeFile(dir, certName, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeFile writes through a temp file made with mode (so a key is never
// readable by others, not even for a moment), fsyncs and renames it.
func writeFile(dir, name string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(dir, name+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, name))
}

// EnsureIssued returns the paths of outDir/NAME.crt and outDir/NAME.key,
// issuing them from the CA in caDir first unless they exist, were signed by
// that CA, cover every host in opts.Hosts and stay valid for at least a
// tenth of opts.Validity. A certificate that falls short is moved aside (to
// NAME.crt.old / NAME.key.old) and a new one issued. It serves nodes whose
// names are not known before they start (containers): each issues its own.
func EnsureIssued(caDir, outDir string, opts IssueOptions) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(outDir, opts.Name+".crt"), filepath.Join(outDir, opts.Name+".key")
	if opts.Validity <= 0 {
		opts.Validity = DefaultCertValidity
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	if ok, err := covers(caDir, certFile, keyFile, opts.Hosts, now().Add(opts.Validity/10)); err != nil {
		return "", "", err
	} else if ok {
		return certFile, keyFile, nil
	}
	for _, p := range []string{certFile, keyFile} {
		if err := os.Rename(p, p+".old"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", "", err
		}
	}
	if err := Issue(caDir, outDir, opts); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// covers tells whether the pair exists, chains to the CA in caDir, names
// every host and is still valid at until.
func covers(caDir, certFile, keyFile string, hosts []string, until time.Time) (bool, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, nil // unreadable or mismatched: issue a new one
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return false, nil
	}
	ca, _, err := LoadCA(caDir)
	if err != nil {
		return false, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: until,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return false, nil
	}
	for _, h := range hosts {
		if h = strings.TrimSpace(h); h != "" && leaf.VerifyHostname(h) != nil {
			return false, nil
		}
	}
	return true, nil
}
