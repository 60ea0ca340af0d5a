package rpc

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/kvd-project/kvd/membership"
)

// certificateRefusal turns a TLS handshake that failed over certificates,
// ours or the member's, into a definite refusal (membership.ErrJoinRefused):
// the two nodes are not of one cluster, or a certificate does not name the
// address, and retrying cannot fix that. Other errors give nil.
func certificateRefusal(err error) error {
	var verify *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var remote *net.OpError
	switch {
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
	for _, a := range []string{"bad certificate", "unknown certificate authority", "certificate required", "certificate unknown"} {
		if strings.Contains(s, a) {
			return true
		}
	}
	return false
}
