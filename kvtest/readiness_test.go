package kvtest_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/kvtest"
	"github.com/kvd-project/kvd/membership"
)

// readyz returns node i's /readyz status code and body.
func readyz(t *testing.T, c *kvtest.Cluster, i int) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + c.Endpoint(i) + "/readyz")
	if err != nil {
		t.Fatalf("readyz: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// health asks node i's gRPC health service about service (Connect's JSON
// protocol, so no generated health client is needed).
func health(t *testing.T, c *kvtest.Cluster, i int, service string) string {
	t.Helper()
	body := `{"service":"` + service + `"}`
	resp, err := http.Post("http://"+c.Endpoint(i)+"/grpc.health.v1.Health/Check", "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatalf("health: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A voter of three whose two peers stop loses its leader: within the stated
// bound it stops being ready (serializable reads Unavailable with the
// reason, /readyz 503, gRPC health NOT_SERVING, Status says why), and it is
// ready again once the peers are back and a ReadIndex succeeds.
func TestSurvivorStopsBeingReadyAndRecovers(t *testing.T) {
	c := kvtest.NewCluster(t, 3)
	c.Put(0, "k", "v")
	survivor := (c.Leader() + 1) % 3
	n := c.Server(survivor).Node()
	bound := n.NotReadyAfter()
	// A serializable read on a follower may trail the put by an apply:
	// wait until it sees it.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got, err := c.Get(survivor, "k", true)
		if err == nil && got == "v" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serializable get before the loss: %q, %v", got, err)
		}
	}
	lost := time.Now()
	for i := 0; i < 3; i++ {
		if i != survivor {
			c.Stop(i)
		}
	}
	var readErr error
	for deadline := lost.Add(bound + 3*time.Second); ; {
		_, readErr = c.Get(survivor, "k", true)
		if readErr != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serving serializable reads %s after losing its quorum (bound %s)", time.Since(lost), bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(lost)
	t.Logf("not ready after %s (bound %s): %v", took.Round(10*time.Millisecond), bound, readErr)
	if connect.CodeOf(readErr) != connect.CodeUnavailable || !strings.Contains(readErr.Error(), "not ready") {
		t.Fatalf("serializable read: %v; want Unavailable naming why the node is not ready", readErr)
	}
	if took < bound/2 {
		t.Fatalf("not ready after %s, well before the bound %s: a normal election would flap readiness", took, bound)
	}
	if code, body := readyz(t, c, survivor); code != http.StatusServiceUnavailable || !strings.Contains(body, "isolated") {
		t.Fatalf("readyz = %d %q; want 503 saying the node is isolated", code, body)
	}
	if got := health(t, c, survivor, "kvd.v1.KV"); !strings.Contains(got, "SERVING_STATUS_NOT_SERVING") {
		t.Fatalf("gRPC health of kvd.v1.KV = %s; want NOT_SERVING", got)
	}
	if st := n.Status(); st.Ready || st.State != membership.StateIsolated || st.Reason == "" {
		t.Fatalf("status = %+v; want not ready, isolated, with a reason", st)
	}

	for i := 0; i < 3; i++ {
		if i != survivor {
			c.Start(i)
		}
	}
	c.WaitReady(30 * time.Second)
	if got, err := c.Get(survivor, "k", true); err != nil || got != "v" {
		t.Fatalf("serializable get after the peers returned: %q, %v", got, err)
	}
	if code, body := readyz(t, c, survivor); code != http.StatusOK {
		t.Fatalf("readyz after recovery = %d %q", code, body)
	}
	if got := health(t, c, survivor, "kvd.v1.KV"); !strings.Contains(got, `"SERVING_STATUS_SERVING"`) {
		t.Fatalf("gRPC health after recovery = %s", got)
	}
}

// A normal leader change does not revoke readiness: when the leader stops,
// the other two elect a new one well within the bound, and stay ready
// throughout.
func TestLeaderChangeKeepsFollowersReady(t *testing.T) {
	c := kvtest.NewCluster(t, 3)
	c.Put(0, "k", "v")
	leader := c.Leader()
	c.Stop(leader)
	deadline := time.Now().Add(2 * c.Server((leader+1)%3).Node().NotReadyAfter())
	for time.Now().Before(deadline) {
		for i := 0; i < 3; i++ {
			if i == leader {
				continue
			}
			if st := c.Server(i).Node().Status(); !st.Ready {
				t.Fatalf("node %d stopped being ready during a leader change: %s: %s", i+1, st.State, st.Reason)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got, err := c.Get((leader+1)%3, "k", true); err != nil || got != "v" {
		t.Fatalf("serializable get after the leader change: %q, %v", got, err)
	}
}
