package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

// clientStart is what an HTTP/2 client sends first: the preface, its
// SETTINGS, a WINDOW_UPDATE, the acknowledgement of our SETTINGS (ack
// true) and a request's HEADERS with contentType.
func clientStart(t *testing.T, contentType string, ack bool) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString(h2cPreface)
	fr := http2.NewFramer(&b, nil)
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	fr.WriteWindowUpdate(0, 1<<20)
	if ack {
		fr.WriteSettingsAck()
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/kvd.v1.KV/Get"}, {":authority", "x"}, {"content-type", contentType}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	return b.Bytes()
}

// The router sends SETTINGS at once, reads up to the first HEADERS and our
// acknowledgement, sends gRPC with the proto codec to grpc-go and the rest
// to net/http, and replays all it read but that acknowledgement.
func TestSniffHTTP2RoutesByContentType(t *testing.T) {
	cases := []struct {
		contentType string
		want        route
	}{
		{"application/grpc", routeGRPC},
		{"application/grpc+proto", routeGRPC},
		{"application/grpc+json", routeHTTP2},
		{"application/grpc-web+proto", routeHTTP2},
		{"application/connect+proto", routeHTTP2},
		{"application/proto", routeHTTP2},
	}
	for _, tc := range cases {
		client, srv := net.Pipe()
		sent := clientStart(t, tc.contentType, true)
		go func() {
			client.Write(sent[:len(h2cPreface)])
			io.ReadFull(client, make([]byte, len(earlySettings))) // ours, before the client's frames
			client.Write(sent[len(h2cPreface):])
		}()
		raw, h2, err := peekPreface(srv)
		if err != nil || !h2 {
			t.Fatalf("%s: preface: h2 %v, %v", tc.contentType, h2, err)
		}
		got, c, err := sniffHTTP2(raw)
		if err != nil {
			t.Fatalf("%s: %v", tc.contentType, err)
		}
		if got != tc.want {
			t.Errorf("%s: route %d, want %d", tc.contentType, got, tc.want)
		}
		replayed := make([]byte, len(sent)-9)
		if _, err := io.ReadFull(c, replayed); err != nil {
			t.Fatal(err)
		}
		if want := bytes.Replace(sent, []byte{0, 0, 0, 4, 1, 0, 0, 0, 0}, nil, 1); !bytes.Equal(replayed, want) {
			t.Errorf("%s: replayed %x, want the client's bytes without the SETTINGS ack %x", tc.contentType, replayed, want)
		}
		client.Close()
		srv.Close()
	}
}

// HTTP/1.1 is not mistaken for h2c, even a request shorter than the
// preface.
func TestPeekPrefaceLetsHTTP1Through(t *testing.T) {
	client, srv := net.Pipe()
	defer client.Close()
	go client.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	c, h2, err := peekPreface(srv)
	if err != nil || h2 {
		t.Fatalf("h2 %v, %v", h2, err)
	}
	got := make([]byte, 18)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "GET / HTTP/1.0\r\n\r\n" {
		t.Fatalf("replayed %q, %v", got, err)
	}
}

// Over TLS with --client-cert-auth, a grpc-go client with a certificate
// from the cluster CA is served (grpc-go sees the peer's certificate, so
// it passes the membership guard too); one without is refused with
// Unauthenticated and connect's message.
func TestGRPCGoOverTLSWithClientCertAuth(t *testing.T) {
	p := newPKI(t)
	nc, nk := p.issue("node")
	s, _ := startTLS(t, p, nc, nk, func(c *Config) { c.ClientCertAuth = true })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dial := func(cert *tls.Certificate) *grpc.ClientConn {
		cfg := &tls.Config{RootCAs: p.pool()}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		cc, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}

	cc, ck := p.issue("operator")
	conn := dial(loadPair(t, cc, ck))
	good := kvdv1.NewClusterClient(conn)
	if st, err := good.Status(ctx, &kvdv1.StatusRequest{}); err != nil || !st.Ready {
		t.Fatalf("status with a cluster certificate: %v %v", st, err)
	}
	_, err := good.Promote(ctx, &kvdv1.PromoteRequest{Id: 99})
	if err == nil || status.Code(err) == codes.PermissionDenied {
		t.Fatalf("Promote of an unknown replica with a cluster certificate: %v, want a non-permission error", err)
	}
	if _, err := kvdv1.NewKVClient(conn).Put(ctx, &kvdv1.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatalf("put over TLS: %v", err)
	}

	_, err = kvdv1.NewClusterClient(dial(nil)).Status(ctx, &kvdv1.StatusRequest{})
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "requires a client certificate") {
		t.Fatalf("no client certificate: %v, want Unauthenticated naming the certificate", err)
	}
}

// The router's early SETTINGS must agree with what x/net/http2 then sends
// on every setting that may not change after the first SETTINGS frame
// (RFC 9218's NO_RFC7540_PRIORITIES): Chromium refuses the connection
// otherwise (ERR_HTTP2_PROTOCOL_ERROR, found by the browser test over TLS).
func TestEarlySettingsAgreeWithHTTP2Server(t *testing.T) {
	client, srv := net.Pipe()
	defer client.Close()
	type result struct {
		to  route
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		to, c, err := sniffHTTP2(&replayConn{Conn: srv, buf: []byte(h2cPreface)})
		done <- result{to, c, err}
	}()
	fr := http2.NewFramer(io.Discard, client)
	settings := func() map[http2.SettingID]uint32 {
		t.Helper()
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("read the server's frames: %v", err)
			}
			if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
				m := map[http2.SettingID]uint32{}
				sf.ForeachSetting(func(s http2.Setting) error { m[s.ID] = s.Val; return nil })
				return m
			}
		}
	}
	early := settings()
	sent := clientStart(t, "application/connect+proto", true)
	go client.Write(sent[len(h2cPreface):])
	r := <-done
	if r.err != nil || r.to != routeHTTP2 {
		t.Fatalf("sniff: route %v, err %v", r.to, r.err)
	}
	var h2 http2.Server
	go h2.ServeConn(r.c, &http2.ServeConnOpts{Handler: http.NotFoundHandler()})
	later := settings()
	v, ok := later[http2.SettingNoRFC7540Priorities]
	if !ok {
		t.Fatal("x/net/http2 no longer sends NO_RFC7540_PRIORITIES: check earlySettings against what it sends now")
	}
	if early[http2.SettingNoRFC7540Priorities] != v {
		t.Fatalf("early SETTINGS NO_RFC7540_PRIORITIES = %d, the HTTP/2 server's = %d: a browser ends such a connection",
			early[http2.SettingNoRFC7540Priorities], v)
	}
	r.c.Close()
}
