package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// runApp runs bench with args and returns its stdout and error.
func runApp(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := newApp(&stdout, &stderr).RunContext(ctx, append([]string{"bench"}, args...))
	return stdout.String(), err
}

func TestFlagValidation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--clients", "0"}, "--clients (0) must be between 1 and 100000"},
		{[]string{"--ops", "10", "--duration", "5s"}, "--duration (5s) and --ops (10) are both set: give one"},
		{[]string{"--duration", "0s"}, "neither --duration nor --ops is set"},
		{[]string{"--read-ratio", "2"}, "--read-ratio (2) must be between 0 and 1"},
		{[]string{"--key-dist", "zipf"}, `--key-dist "zipf" is not "uniform" or "sequential"`},
		{[]string{"--key-size", "3"}, "--key-size (3) is too small for --keyspace (100000)"},
		{[]string{"--plot", "out.png"}, `--plot "out.png": only .html is supported`},
		{[]string{"--consistency", "strong"}, `--consistency "strong" is not linearizable or serializable`},
		{[]string{"--protocol", "http"}, `--protocol "http" is not connect, grpc, grpcweb or grpc-go`},
		{[]string{"--protocol", "grpc", "--transport", "http1"}, "--transport http1 cannot carry --protocol grpc (gRPC needs HTTP/2): use h2c"},
		{[]string{"--protocol", "grpc-go", "--prefer-leader"}, "--protocol grpc-go is plain stubs"},
		{[]string{"--transport", "h2c"}, "--transport h2c says how unary calls travel, but puts and gets go over the stream (one HTTP/2 stream per node, the client's default): add --unary"},
		{[]string{"--protocol", "grpc-go", "--transport", "http1"}, "not with --transport http1"},
		{[]string{"--protocol", "grpc-go", "--watchers", "2"}, "--watchers"},
		{[]string{"--transport", "quic"}, `--transport "quic" is not http1 or h2c`},
		{[]string{"--endpoints", " , "}, "--endpoints is empty"},
		{[]string{"--timeout", "0s"}, "--timeout (0s) must be > 0"},
		{[]string{"put"}, `unexpected argument "put" (commands: ceiling, table)`},
		{[]string{"ceiling", "--transport", ""}, "--transport is empty"},
		{[]string{"ceiling", "--transport", "http1,quic"}, `--transport "quic" is not http1 or h2c`},
		{[]string{"ceiling", "--clients", "-3"}, "--clients (-3)"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := runApp(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestUnreachableEndpointFailsFast(t *testing.T) {
	start := time.Now()
	_, err := runApp(t, "--endpoints", "127.0.0.1:1", "--duration", "1h")
	if err == nil || !strings.Contains(err.Error(), "cannot read from kvd at [127.0.0.1:1]") {
		t.Fatalf("error = %v, want a preflight failure", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %v to notice", d)
	}
}

func TestTransportDefaults(t *testing.T) {
	if got := (dialOptions{Protocol: "connect"}).transport(); got != transportStream {
		t.Errorf("default transport %s, want the stream", got)
	}
	if got := (dialOptions{Protocol: "grpcweb"}).transport(); got != transportHTTP1 {
		t.Errorf("grpcweb without --unary: %s, want http1 (gRPC-Web cannot stream both ways)", got)
	}
	for _, tc := range []struct{ protocol, transport, want string }{
		{"connect", "", "http1"}, {"grpcweb", "", "http1"}, {"grpc", "", "h2c"}, {"connect", "h2c", "h2c"}, {"grpc-go", "", "h2c"},
	} {
		o := dialOptions{Protocol: tc.protocol, Transport: tc.transport, Unary: true}
		if got := o.transport(); got != tc.want {
			t.Errorf("%s with transport %q: %s, want %s", tc.protocol, tc.transport, got, tc.want)
		}
	}
}

func TestSplitList(t *testing.T) {
	got := splitList(" a:1, ,b:2,")
	if len(got) != 2 || got[0] != "a:1" || got[1] != "b:2" {
		t.Errorf("splitList = %q", got)
	}
}
