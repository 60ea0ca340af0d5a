package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// ErrOpenMembership: the node would let anyone who reaches it change the
// cluster's membership.
var ErrOpenMembership = errors.New("server: membership open to anyone")

// CheckMembershipGuard decides whether a node may start with its membership
// calls (Join, Promote, Remove, TransferLeader, Snapshot) unguarded, that
// is with neither a join secret nor --client-cert-auth. On a non-loopback
// address (API or Raft) it may not, unless insecureOpen; on loopback it
// may, with a warning (returned, for the caller to log once). Pure.
func CheckMembershipGuard(listenAddrs []string, secret bool, clientCertAuth, insecureOpen bool) (warning string, err error) {
	if secret || clientCertAuth {
		return "", nil
	}
	var exposed []string
	for _, a := range listenAddrs {
		if a != "" && !loopback(a) {
			exposed = append(exposed, a)
		}
	}
	switch {
	case len(exposed) == 0:
		return "membership calls are not guarded (no --join-secret, no --client-cert-auth): anyone on this host can join, promote or remove members", nil
	case insecureOpen:
		return fmt.Sprintf("--insecure-open-membership: anyone who reaches %s can join, promote or remove members", strings.Join(exposed, ", ")), nil
	}
	return "", fmt.Errorf("%w: %s is reachable from other hosts and membership calls are not guarded: "+
		"set --join-secret (KVD_JOIN_SECRET, the same on every node), or use TLS with --client-cert-auth; "+
		"--insecure-open-membership starts anyway", ErrOpenMembership, strings.Join(exposed, ", "))
}

// loopback: the address's host is a loopback IP or "localhost". A wildcard
// (empty host, 0.0.0.0, ::) or any other name counts as reachable.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// handshakeLog is the API server's error log: net/http reports a failed
// TLS handshake as "http: TLS handshake error from ADDR: ERR"; those become
// one warning per second (with the remote address, a hint, and how many
// were folded into it), everything else a debug line.
type handshakeLog struct {
	log *slog.Logger
	now func() time.Time

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

const handshakePrefix = "http: TLS handshake error from "

func (h *handshakeLog) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	rest, ok := strings.CutPrefix(line, handshakePrefix)
	if !ok {
		h.log.Debug(line)
		return len(p), nil
	}
	addr, msg, _ := strings.Cut(rest, ": ")
	h.mu.Lock()
	now := h.now()
	if !h.last.IsZero() && now.Sub(h.last) < time.Second {
		h.suppressed++
		h.mu.Unlock()
		h.log.Debug("TLS handshake failed", "remote", addr, "err", msg)
		return len(p), nil
	}
	folded := h.suppressed
	h.last, h.suppressed = now, 0
	h.mu.Unlock()
	attrs := []any{"remote", addr, "err", msg}
	if hint := handshakeHint(msg); hint != "" {
		attrs = append(attrs, "hint", hint)
	}
	if folded > 0 {
		attrs = append(attrs, "more_failures_in_last_second", folded)
	}
	h.log.Warn("TLS handshake failed", attrs...)
	return len(p), nil
}

// handshakeHint says what the other side most likely got wrong.
func handshakeHint(msg string) string {
	switch {
	case strings.Contains(msg, "does not look like a TLS handshake"),
		strings.Contains(msg, "HTTP request to an HTTPS server"):
		return "the client spoke plaintext: this port serves only TLS; use https:// endpoints and the cluster CA (kvctl --cacert)"
	case strings.Contains(msg, "didn't provide a certificate"):
		return "--client-cert-auth: the client must present a certificate signed by the cluster CA (kvctl --cert/--key)"
	case strings.Contains(msg, "failed to verify certificate"):
		return "the client's certificate is not signed by this cluster's CA (--trusted-ca-file)"
	case strings.Contains(msg, "unknown certificate authority"), strings.Contains(msg, "bad certificate"):
		return "the client does not trust this node's certificate: give it the cluster CA (kvctl --cacert) and an address the certificate names"
	}
	return ""
}
