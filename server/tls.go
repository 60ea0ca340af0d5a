package server

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/kvd-project/kvd/node"
)

// certCheckInterval: GetCertificate looks at the files' contents at
// most this often.
const certCheckInterval = time.Second

// tlsSetup is what the server builds from node.TLSFiles: the API's server
// config, the client config for calls to peers, and the reloader both
// take the node's certificate from.
type tlsSetup struct {
	server *tls.Config
	client *tls.Config
	certs  *certReloader
}

// newTLS loads the files (so that a wrong path or a broken pair is refused
// at start-up, naming the flag) and builds both configs. The CA is read
// once: changing it needs a restart.
func newTLS(files node.TLSFiles, clientCertAuth bool, log *slog.Logger) (*tlsSetup, error) {
	if err := files.Validate(); err != nil {
		return nil, err
	}
	if !files.Enabled() {
		if clientCertAuth {
			return nil, errors.New("server: --client-cert-auth needs --trusted-ca-file (the CA client certificates must be signed by), --cert-file and --key-file")
		}
		return nil, nil
	}
	pemCA, err := os.ReadFile(files.CAFile)
	if err != nil {
		return nil, fmt.Errorf("server: --trusted-ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		return nil, fmt.Errorf("server: --trusted-ca-file %s holds no PEM certificate (give the cluster CA's ca.crt)", files.CAFile)
	}
	certs := &certReloader{certFile: files.CertFile, keyFile: files.KeyFile, log: log, now: time.Now}
	if err := certs.load(); err != nil {
		return nil, err
	}
	// A given client certificate must verify; a missing one is refused by
	// rpc.RequireClientCert (with --client-cert-auth) with a clear answer.
	clientAuth := tls.VerifyClientCertIfGiven
	return &tlsSetup{
		server: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: certs.getCertificate,
			ClientCAs:      pool,
			ClientAuth:     clientAuth,
			NextProtos:     []string{"h2", "http/1.1"},
		},
		client: &tls.Config{
			MinVersion:           tls.VersionTLS12,
			RootCAs:              pool,
			GetClientCertificate: certs.getClientCertificate,
		},
		certs: certs,
	}, nil
}

// certReloader serves the node's certificate and picks up a new one
// written over its files: getCertificate re-reads them when their contents
// changed (looked at no more than once per certCheckInterval), and reload
// re-reads them at once (SIGHUP). A pair that fails to load keeps the old
// certificate and logs an error.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   fileStamp
	checked time.Time
}

// fileStamp is a digest of both files' contents. Not mtime and size: a new
// key has the same size as the old (ECDSA P-256), and a rewrite within the
// file system's timestamp granularity (milliseconds) keeps the mtime, so a
// key that arrives just after its certificate went unseen. The files are a
// few hundred bytes, read at most once a second.
type fileStamp [sha256.Size]byte

// read returns both files and their stamp.
func (r *certReloader) read() (certPEM, keyPEM []byte, st fileStamp, err error) {
	if certPEM, err = os.ReadFile(r.certFile); err != nil {
		return nil, nil, st, err
	}
	if keyPEM, err = os.ReadFile(r.keyFile); err != nil {
		return nil, nil, st, err
	}
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	copy(st[:], h.Sum(nil))
	return certPEM, keyPEM, st, nil
}

// load reads the pair; on error the old certificate stays.
func (r *certReloader) load() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loadLocked()
}

func (r *certReloader) loadLocked() error {
	certPEM, keyPEM, st, err := r.read()
	if err == nil {
		var pair tls.Certificate
		if pair, err = tls.X509KeyPair(certPEM, keyPEM); err == nil {
			r.cert, r.stamp = &pair, st
			return nil
		}
	}
	return fmt.Errorf("server: load the certificate --cert-file %s and --key-file %s: %w (they must be a PEM certificate and its private key)", r.certFile, r.keyFile, err)
}

// reload re-reads the files now, logging the outcome.
func (r *certReloader) reload() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checked = r.now()
	r.reloadLocked("signal")
}

// reloadLocked reports whether the files loaded; if not, the previous
// certificate stays.
func (r *certReloader) reloadLocked(why string) bool {
	if err := r.loadLocked(); err != nil {
		r.log.Error("TLS certificate not reloaded; still serving the previous one", "why", why, "err", err)
		return false
	}
	r.log.Info("TLS certificate loaded", "why", why, "cert_file", r.certFile, "not_after", r.cert.Leaf.NotAfter)
	return true
}

func (r *certReloader) current() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.checked) >= certCheckInterval {
		r.checked = now
		if _, _, st, err := r.read(); err == nil && st != r.stamp {
			if !r.reloadLocked("file changed") {
				// A broken pair is not retried until the files change again.
				r.stamp = st
			}
		}
	}
	return r.cert
}

func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.current(), nil
}

func (r *certReloader) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.current(), nil
}
