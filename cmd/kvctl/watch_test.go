package main

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/kvd-project/kvd/kvtest"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/server"
)

// kvctl watch against a real node that keeps 8 revisions of history: a
// replay from --rev as text and as JSON lines, a watch from now, and exit
// code 8 for a revision the node no longer holds.
func TestWatchAgainstRealCluster(t *testing.T) {
	c := kvtest.NewCluster(t, 1, func(cfg *server.Config) { cfg.Node.WatchHistory = 8 })
	for i := range 80 { // past 8 + the slack of 64: the oldest revisions go
		c.Put(0, fmt.Sprintf("fill/%02d", i), "x")
	}
	r1 := c.Put(0, "w/a", "1")
	c.Put(0, "other", "x")
	r2 := c.Put(0, "w/b", "2")
	r3 := c.Put(0, "w/a", "3")
	del, err := c.KV(0).Delete(context.Background(), connect.NewRequest(&kvdv1.DeleteRequest{Key: []byte("w/b")}))
	if err != nil {
		t.Fatal(err)
	}
	r4 := del.Msg.Revision
	ep := "--endpoints=" + c.Endpoint(0)
	kvctl := func(args ...string) string {
		t.Helper()
		out, errOut, code := runKvctl(t, "", append([]string{ep}, args...)...)
		if code != 0 {
			t.Fatalf("kvctl %v: exit %d: %s", args, code, errOut)
		}
		return out
	}

	out := kvctl("watch", "w/", "--prefix", "--rev", fmt.Sprint(r1), "--count", "4")
	want := fmt.Sprintf("put w/a 1 rev=%d created\nput w/b 2 rev=%d created\nput w/a 3 rev=%d\ndelete w/b rev=%d\n", r1, r2, r3, r4)
	if out != want {
		t.Errorf("watch --prefix --rev %d printed\n%s\nwant\n%s", r1, out, want)
	}
	out = kvctl("-o", "json", "watch", "w/b", "--rev", fmt.Sprint(r1), "--count", "2")
	want = fmt.Sprintf(`{"type":"put","key":"w/b","value":"2","mod_revision":%d,"created":true}`+"\n"+
		`{"type":"delete","key":"w/b","mod_revision":%d}`+"\n", r2, r4)
	if out != want {
		t.Errorf("watch w/b -o json printed\n%s\nwant\n%s", out, want)
	}

	watchFromNow(t, c, ep)

	out, errOut, code := runKvctl(t, "", ep, "watch", "fill/", "--prefix", "--rev", "1", "--count", "1")
	if code != exitCompacted || out != "" || !strings.Contains(errOut, "revision 1 is compacted: the oldest revision still available is ") {
		t.Fatalf("watch --rev 1 below the history: exit %d, stdout %q, stderr %q; want exit %d naming the oldest revision",
			code, out, errOut, exitCompacted)
	}
}

// watchFromNow checks that kvctl watch without --rev starts now: it puts
// until the watch has printed one event, which must be one of those puts.
func watchFromNow(t *testing.T, c *kvtest.Cluster, ep string) {
	t.Helper()
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run([]string{"kvctl", ep, "watch", "live", "--count", "1"}, &out, &errOut) }()
	revs := map[string]uint64{}
	for i := 0; i < 100; i++ {
		v := fmt.Sprintf("v%d", i)
		revs[v] = c.Put(0, "live", v)
		select {
		case code := <-done:
			if code != 0 {
				t.Fatalf("watch live: exit %d: %s", code, errOut.String())
			}
			m := regexp.MustCompile(`^put live (v\d+) rev=(\d+)( created)?\n$`).FindStringSubmatch(out.String())
			if m == nil || m[2] != strconv.FormatUint(revs[m[1]], 10) || (m[3] != "") != (m[1] == "v0") {
				t.Fatalf("watch live printed %q; puts at %v", out.String(), revs)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("watch live printed nothing in 100 puts: %q %q", out.String(), errOut.String())
}
