package rpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/kvd-project/kvd/membership"
)

// certificateRefusal turns a TLS handshake that failed over certificates,
// ours or the member's, into a definite refusal (membership.ErrJoinRefused):
// the two nodes are not of one cluster, a certificate does not name the
// address or has expired, and retrying cannot fix that. Other errors give
// nil. Go's HTTP/2 transport reports a refusal of our certificate only as
// "client conn could not be established"; for any unexplained error on a
// TLS dialer it makes one plain handshake to the member to learn why.
func (d *peerDialer) certificateRefusal(ctx context.Context, apiAddr string, err error) error {
	if err == nil {
		return nil
	}
	if refused := certificateError(err); refused != nil || d.tls == nil {
		return refused
	}
	return certificateError(probeHandshake(ctx, apiAddr, d.tls))
}

// probeHandshake completes a TLS handshake with addr and waits briefly for
// the member's verdict on our certificate (under TLS 1.3 it comes after the
// handshake, as an alert). nil = nothing wrong seen.
func probeHandshake(ctx context.Context, addr string, cfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(time.Second))
	_, err = conn.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return nil
	}
	return err
}

func certificateError(err error) error {
	var verify *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var remote *net.OpError
	switch {
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return fmt.Errorf("%w: the member's certificate has expired or is not valid yet (check both clocks and the certificate's dates): %v", membership.ErrJoinRefused, err)
	case errors.As(err, &host):
		return fmt.Errorf("%w: the member's certificate does not name the address dialled (issue it with every name and IP it is reached by): %v", membership.ErrJoinRefused, err)
	case errors.As(err, &unknown), errors.As(err, &verify):
		return fmt.Errorf("%w: the member's certificate is not signed by this node's --trusted-ca-file (is it another cluster's CA?): %v", membership.ErrJoinRefused, err)
	case errors.As(err, &remote) && remote.Op == "remote error" && certificateAlert(remote.Err):
		return fmt.Errorf("%w: the member refused this node's certificate (it must be signed by the cluster CA the members trust): %v", membership.ErrJoinRefused, err)
	}
	return nil
}

// certificateAlert: a TLS alert about our certificate (crypto/tls does not
// export its alert type for TCP connections, only the text).
func certificateAlert(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	for _, a := range []string{"bad certificate", "unknown certificate authority", "certificate required", "certificate unknown", "expired certificate"} {
		if strings.Contains(s, a) {
			return true
		}
	}
	return false
}
