package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// bin holds the binaries built once for the whole run.
var bin struct{ kvd, kvctl string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kvd-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.kvd = filepath.Join(dir, "kvd")
	bin.kvctl = filepath.Join(dir, "kvctl")
	for out, pkg := range map[string]string{bin.kvd: "../cmd/kvd", bin.kvctl: "../cmd/kvctl"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: build %s: %v\n", pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one kvd process; the same args restart it on the same data.
type proc struct {
	t    *testing.T
	name string
	args []string
	env  []string // extra environment for the next start only
	api  string
	log  *bytes.Buffer
	// client and scheme reach the API: http.DefaultClient and "http://",
	// or after useTLS an https client.
	client *http.Client
	scheme string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// syncBuffer is a buffer safe for the process's writer goroutine. The
// buffer is a field, not embedded: exec would otherwise call its ReadFrom
// directly, bypassing the lock.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var logs sync.Map // *proc → *syncBuffer

func newProc(t *testing.T, name, api string, args ...string) *proc {
	p := &proc{t: t, name: name, api: api, args: args, client: http.DefaultClient, scheme: "http://"}
	buf := new(syncBuffer)
	logs.Store(p, buf)
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("---- %s log ----\n%s", name, buf.String())
		}
	})
	return p
}

func (p *proc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	buf, _ := logs.Load(p)
	cmd := exec.Command(bin.kvd, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	p.env = nil
	cmd.Stdout = buf.(*syncBuffer)
	cmd.Stderr = buf.(*syncBuffer)
	fmt.Fprintf(buf.(*syncBuffer), "---- start %s %s\n", bin.kvd, redact(p.args))
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("%s: start: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
}

// redact hides secrets in a printed command line.
func redact(args []string) string {
	out := append([]string(nil), args...)
	for i := range out {
		if out[i] == "--join-secret" && i+1 < len(out) {
			out[i+1] = "***"
		}
	}
	return strings.Join(out, " ")
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.cmd = nil
}

// wait waits for the process to exit by itself and returns its exit error.
func (p *proc) wait(timeout time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		return fmt.Errorf("%s still running after %s", p.name, timeout)
	}
	state := p.cmd.ProcessState
	p.cmd = nil
	if !state.Success() {
		return fmt.Errorf("%s: %v", p.name, state)
	}
	return nil
}

// logs returns what the process has printed so far.
func (p *proc) logs() string {
	buf, _ := logs.Load(p)
	return buf.(*syncBuffer).String()
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not exit within 20s of SIGTERM", p.name)
	}
	err := p.cmd.ProcessState
	p.cmd = nil
	if !err.Success() {
		return fmt.Errorf("%s exited with %v after SIGTERM", p.name, err)
	}
	return nil
}

// useTLS makes the helpers speak https with cfg (the node has TLS).
func (p *proc) useTLS(cfg *tls.Config) {
	p.client = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
	p.scheme = "https://"
}

func (p *proc) kv() kvdv1connect.KVClient {
	return kvdv1connect.NewKVClient(p.client, p.scheme+p.api)
}

func (p *proc) cluster() kvdv1connect.ClusterClient {
	return kvdv1connect.NewClusterClient(p.client, p.scheme+p.api)
}

func (p *proc) status(ctx context.Context) (*kvdv1.StatusResponse, error) {
	c := p.cluster()
	resp, err := c.Status(ctx, connect.NewRequest(&kvdv1.StatusRequest{}))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// waitReady polls /readyz until it answers 200.
func (p *proc) waitReady(timeout time.Duration) {
	p.t.Helper()
	if !p.readyWithin(timeout) {
		p.t.Fatalf("%s not ready within %s", p.name, timeout)
	}
}

// readyWithin reports whether /readyz answers 200 within timeout.
func (p *proc) readyWithin(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := p.client.Get(p.scheme + p.api + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}
