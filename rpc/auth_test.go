package rpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The guard lets a membership call through with the secret, or with a
// verified client certificate when client-cert auth is on; with neither
// configured it is open.
func TestGuardAllowsSecretOrVerifiedClientCert(t *testing.T) {
	withSecret := func(s string) http.Header {
		h := http.Header{}
		if s != "" {
			h.Set(SecretHeader, s)
		}
		return h
	}
	verified := context.WithValue(context.Background(), clientCertKey{}, true)
	plain := context.Background()
	cases := []struct {
		name           string
		secret         string
		clientCertAuth bool
		ctx            context.Context
		header         http.Header
		want           bool
	}{
		{"open: nothing configured", "", false, plain, withSecret(""), true},
		{"secret: right", "s3cret", false, plain, withSecret("s3cret"), true},
		{"secret: wrong", "s3cret", false, plain, withSecret("nope"), false},
		{"secret: missing", "s3cret", false, plain, withSecret(""), false},
		{"secret: a verified cert is not enough without client-cert-auth", "s3cret", false, verified, withSecret(""), false},
		{"certs: verified", "", true, verified, withSecret(""), true},
		{"certs: no cert", "", true, plain, withSecret(""), false},
		{"certs: an empty secret header does not match the unset secret", "", true, plain, http.Header{SecretHeader: {""}}, false},
		{"both: secret alone", "s3cret", true, plain, withSecret("s3cret"), true},
		{"both: cert alone", "s3cret", true, verified, withSecret(""), true},
		{"both: neither", "s3cret", true, plain, withSecret("nope"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newGuard(tc.secret, tc.clientCertAuth)
			if got := g.allowed(tc.ctx, tc.header.Get(SecretHeader)); got != tc.want {
				t.Fatalf("allowed = %v, want %v", got, tc.want)
			}
		})
	}
}

// withClientCert marks only requests whose client certificate was verified.
func TestWithClientCertMarksVerifiedChains(t *testing.T) {
	var got bool
	h := withClientCert(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = verifiedClient(r.Context()) }))
	cases := []struct {
		name  string
		state *tls.ConnectionState
		want  bool
	}{
		{"plaintext", nil, false},
		{"TLS without a client certificate", &tls.ConnectionState{}, false},
		{"unverified certificate", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{}}}, false},
		{"verified", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{}}, VerifiedChains: [][]*x509.Certificate{{{}}}}, true},
	}
	for _, tc := range cases {
		r := httptest.NewRequest("POST", "/kvd.v1.Cluster/Join", nil)
		r.TLS = tc.state
		got = !tc.want
		h.ServeHTTP(httptest.NewRecorder(), r)
		if got != tc.want {
			t.Errorf("%s: verified = %v, want %v", tc.name, got, tc.want)
		}
	}
}
