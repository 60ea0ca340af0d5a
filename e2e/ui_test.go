package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/chromedp/chromedp"

	"github.com/kvd-project/kvd/membership"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
)

// pageView is what the cluster page shows, read from its DOM.
type pageView struct {
	Cards []struct {
		ID, Role, State, Text string
	}
	Events []struct {
		Kind, ID, Text string
	} // oldest first
	Banner, Action, Value, KeysResult, PutsNow string
	Keys                                       []string
}

const pageViewJS = `(() => {
  const q = (s) => document.querySelector(s);
  return {
    cards: [...document.querySelectorAll("#members .member")].map((c) => ({id: c.dataset.id, role: c.dataset.role, state: c.dataset.state, text: c.innerText})),
    events: [...document.querySelectorAll("#timeline li")].reverse().map((l) => ({kind: l.dataset.kind, id: l.dataset.id || "", text: l.innerText})),
    banner: q("#banner").hidden ? "" : q("#banner").innerText,
    action: q("#action-result").innerText,
    keys: [...document.querySelectorAll("#keys tbody tr")].map((r) => r.dataset.key),
    value: q("#value").hidden ? "" : q("#value-body").innerText,
    keysResult: q("#keys-result").innerText,
    putsNow: q("#puts-now").innerText,
  };
})()`

func (v pageView) card(id string) (role, state string, ok bool) {
	for _, c := range v.Cards {
		if c.ID == id {
			return c.Role, c.State, true
		}
	}
	return "", "", false
}

// kinds lists the timeline's event kinds for member id, oldest first.
func (v pageView) kinds(id string) []string {
	var out []string
	for _, e := range v.Events {
		if e.ID == id {
			out = append(out, e.Kind)
		}
	}
	return out
}

// waitPage polls the page until cond holds, or fails with the page's text
// (and, through the procs' cleanup, the kvd logs).
func (b *browser) waitPage(what string, timeout time.Duration, cond func(pageView) bool) pageView {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	var v pageView
	var err error
	for time.Now().Before(deadline) {
		v = pageView{}
		if err = b.eval(pageViewJS, &v); err == nil && cond(v) {
			return v
		}
		time.Sleep(100 * time.Millisecond)
	}
	view, _ := json.MarshalIndent(v, "", "  ")
	b.fail("after %s the page does not show %s (last read error: %v)\n---- page view ----\n%s", timeout, what, err, view)
	return v
}

func kvctl(t *testing.T, p *proc, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(bin.kvctl, append([]string{"--endpoints", p.api}, args...)...).CombinedOutput()
	return string(out), err
}

func roleWord(r kvdv1.Role) string {
	return map[kvdv1.Role]string{kvdv1.Role_ROLE_VOTER: "voter", kvdv1.Role_ROLE_OBSERVER: "observer"}[r]
}

func hasInOrder(got []string, want ...string) bool {
	for _, g := range got {
		if len(want) > 0 && g == want[0] {
			want = want[1:]
		}
	}
	return len(want) == 0
}

// The cluster page, in a real headless Chromium, follows a cluster of real
// kvd processes live: 3 voters and 2 observers with their roles; a
// SIGKILLed voter shown unreachable, then replaced (promotion and removal in
// the timeline); a joiner moving joining → caught up → observer without a
// reload; a kvctl put in the key browser, a put from the page; a member
// removal refused without the join secret and done with it.
func TestUIClusterPage(t *testing.T) {
	const secret = "ui-test-secret"
	flags := []string{"--dead-after", "3s", "--join-secret", secret}
	boot := startBootstrap(t, flags...)
	procs := map[string]*proc{boot.api: boot}
	for i := 1; i <= 4; i++ {
		j := newJoiner(t, fmt.Sprintf("kvd-join%d", i), []*proc{boot}, flags...)
		j.start()
		procs[j.api] = j
	}
	before := waitShape(t, boot, 3, 2, 60*time.Second)
	b := newBrowser(t, 1100, 900)
	b.do("open the node's root", chromedp.Navigate("http://"+boot.api+"/"))

	// Every member with the role the API gives it.
	b.waitPage("the 5 members with their roles", 10*time.Second, func(v pageView) bool {
		if len(v.Cards) != len(before.Members) {
			return false
		}
		for _, m := range before.Members {
			if role, state, _ := v.card(fmt.Sprint(m.Id)); role != roleWord(m.Role) || state != "ready" {
				return false
			}
		}
		return true
	})
	b.screenshot("members")

	victim, victimID := killFollowerVoter(t, before, procs, boot)
	b.waitPage("the killed voter unreachable", 10*time.Second, func(v pageView) bool {
		_, state, _ := v.card(victimID)
		return state == "unreachable"
	})
	b.screenshot("voter-unreachable")
	t.Logf("killed voter %s (%s)", victimID, victim.name)

	observers := map[string]bool{}
	for _, m := range before.Members {
		if m.Role == kvdv1.Role_ROLE_OBSERVER {
			observers[fmt.Sprint(m.Id)] = true
		}
	}
	b.waitPage("an observer's promotion and the dead voter's removal in the timeline", 30*time.Second, func(v pageView) bool {
		promoted := false
		for _, e := range v.Events {
			promoted = promoted || (e.Kind == "promoted" && observers[e.ID])
		}
		_, _, present := v.card(victimID)
		return promoted && !present && hasInOrder(v.kinds(victimID), "down", "removed")
	})
	b.screenshot("voter-replaced")

	lateID := joinLate(t, b, boot, flags)

	browseKeys(t, b, boot)
	removeFromPage(t, b, boot, lateID, secret)
	checkPhoneWidth(b)
}

// browseKeys: a put made with kvctl shows in the key browser, pages
// continue, binary values show in hex, and a put and a delete from the page
// reach the cluster and the node's traffic chart.
func browseKeys(t *testing.T, b *browser, boot *proc) {
	t.Helper()
	if out, err := kvctl(t, boot, "put", "ui/greeting", "hello from kvctl"); err != nil {
		t.Fatalf("kvctl put: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	puts := map[string][]byte{"ui/bin": {0, 1, 2, 0xff}}
	for i := range 60 {
		puts[fmt.Sprintf("ui/page/%02d", i)] = []byte("v")
	}
	for k, v := range puts {
		if _, err := boot.kv().Put(ctx, connect.NewRequest(&kvdv1.PutRequest{Key: []byte(k), Value: v})); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	b.do("list keys under ui/",
		chromedp.SendKeys(chromedp.CSS("#prefix"), "ui/"),
		chromedp.Click(chromedp.CSS("#range-form button")))
	b.waitPage("a first page of 50 keys", 10*time.Second, func(v pageView) bool { return len(v.Keys) == 50 && v.Keys[0] == "ui/bin" })
	b.do("next page", chromedp.Click(chromedp.CSS("#more")))
	b.waitPage("all 62 keys", 10*time.Second, func(v pageView) bool { return len(v.Keys) == 62 && v.Keys[61] == "ui/page/59" })
	b.do("open ui/greeting", chromedp.Click(chromedp.CSS(`#keys tr[data-key="ui/greeting"] button`)))
	b.waitPage("the value of ui/greeting", 10*time.Second, func(v pageView) bool { return v.Value == "hello from kvctl" })
	b.screenshot("key-browser")
	b.do("open ui/bin", chromedp.Click(chromedp.CSS(`#keys tr[data-key="ui/bin"] button`)))
	b.waitPage("ui/bin in hex", 10*time.Second, func(v pageView) bool { return v.Value == "00000000  00 01 02 ff" })

	b.do("put from the page",
		chromedp.SendKeys(chromedp.CSS("#put-key"), "ui/from-page"),
		chromedp.SendKeys(chromedp.CSS("#put-value"), "written in the browser"),
		chromedp.Click(chromedp.CSS("#put-form button")))
	b.waitPage("the put's revision and the value", 10*time.Second, func(v pageView) bool {
		return strings.Contains(v.KeysResult, "put ui/from-page: revision") && v.Value == "written in the browser"
	})
	if out, err := kvctl(t, boot, "get", "ui/from-page"); err != nil || strings.TrimSpace(out) != "written in the browser" {
		t.Fatalf("kvctl get ui/from-page after the page's put: %v %q", err, out)
	}
	b.do("delete from the page", chromedp.Click(chromedp.CSS("#delete")))
	b.waitPage("the delete's revision", 10*time.Second, func(v pageView) bool { return strings.Contains(v.KeysResult, "deleted ui/from-page") })
	if out, err := kvctl(t, boot, "get", "ui/from-page"); exitCode(err) != 2 {
		t.Fatalf("kvctl get ui/from-page after the page's delete: %v %q (want exit 2, not found)", err, out)
	}
	// The 63 puts on this node appear in its puts/s chart.
	b.waitPage("puts in the traffic chart", 10*time.Second, func(v pageView) bool {
		return v.PutsNow != "" && !strings.Contains(v.PutsNow, "max 0.0/s")
	})
}

func exitCode(err error) int {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	return 0
}

// checkPhoneWidth shows the page 390 px wide: nothing may overflow sideways.
func checkPhoneWidth(b *browser) {
	b.t.Helper()
	b.do("phone-width viewport", chromedp.EmulateViewport(390, 844))
	var wide []string
	if err := b.eval(`[...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1).map((e) => e.tagName + "." + e.className)`, &wide); err != nil {
		b.fail("read the layout: %v", err)
	}
	b.screenshot("phone")
	if len(wide) > 0 {
		b.fail("at 390 px wide these elements overflow: %v", wide)
	}
}

// killFollowerVoter SIGKILLs a voter that is neither the leader nor the
// node serving the page.
func killFollowerVoter(t *testing.T, ms *kvdv1.MembersResponse, procs map[string]*proc, page *proc) (*proc, string) {
	t.Helper()
	for _, m := range ms.Members {
		if p := procs[m.ApiAddr]; m.Role == kvdv1.Role_ROLE_VOTER && !m.Leader && p != nil && p != page {
			p.kill()
			return p, fmt.Sprint(m.Id)
		}
	}
	t.Fatalf("no follower voter to kill besides the page's node:%s", describe(ms))
	return nil, ""
}

// joinLate starts a node with --join that dies right after its Join (so
// the page sees it joining, not caught up), then starts it again: the page
// must show it move to a ready observer. It returns the new member's ID.
func joinLate(t *testing.T, b *browser, boot *proc, flags []string) string {
	t.Helper()
	j := newJoiner(t, "kvd-late", []*proc{boot}, flags...)
	j.env = []string{membership.CrashEnv + "=" + membership.CrashAfterJoin}
	j.start()
	if err := j.wait(60 * time.Second); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("late joiner did not stop after its join: %v\n%s", err, j.logs())
	}
	var id string
	b.waitPage("the late joiner as joining", 15*time.Second, func(v pageView) bool {
		for _, c := range v.Cards {
			if c.Role == "joining" {
				id = c.ID
				return hasInOrder(v.kinds(id), "joined")
			}
		}
		return false
	})
	b.screenshot("joining")
	j.start()
	b.waitPage("the late joiner caught up as an observer", 30*time.Second, func(v pageView) bool {
		role, state, _ := v.card(id)
		return role == "observer" && state == "ready" && hasInOrder(v.kinds(id), "joined", "caught-up")
	})
	b.screenshot("joiner-caught-up")
	return id
}

// removeFromPage removes member id from the page: refused without the join
// secret (the member stays), done with it.
func removeFromPage(t *testing.T, b *browser, boot *proc, id, secret string) {
	t.Helper()
	remove := chromedp.CSS(fmt.Sprintf(`.member[data-id="%s"] button[data-action="remove"]`, id))
	confirm := func() {
		b.do("arm remove", chromedp.Click(remove))
		b.waitPage("the confirm button", 5*time.Second, func(v pageView) bool {
			for _, c := range v.Cards {
				if c.ID == id {
					return strings.Contains(c.Text, "Confirm remove")
				}
			}
			return false
		})
		b.do("confirm remove", chromedp.Click(remove))
	}
	confirm()
	b.waitPage("the removal refused without the secret", 10*time.Second, func(v pageView) bool {
		return strings.Contains(v.Action, "permission_denied")
	})
	b.screenshot("remove-refused")
	ms := waitShape(t, boot, 3, 2, 10*time.Second)
	if _, ok := roles(ms)[parseID(t, id)]; !ok {
		t.Fatalf("member %s gone after a refused removal:%s", id, describe(ms))
	}

	b.do("type the join secret", chromedp.SendKeys(chromedp.CSS("#secret"), secret))
	confirm()
	b.waitPage("the removal done, in the members and the timeline", 15*time.Second, func(v pageView) bool {
		_, _, present := v.card(id)
		return strings.Contains(v.Action, "done") && !present && hasInOrder(v.kinds(id), "removed")
	})
	// One call per confirmed click: a stale armed button once sent a
	// second Remove, answered "not a member" or "system is too busy".
	var calls []string
	if err := b.eval(`performance.getEntriesByType("resource").map((e) => e.name).filter((n) => n.endsWith("/kvd.v1.Cluster/Remove"))`, &calls); err != nil || len(calls) != 2 {
		b.fail("the page made %d Remove calls for 2 confirmed clicks (%v)", len(calls), err)
	}
	b.screenshot("removed")
}

func parseID(t *testing.T, s string) uint64 {
	t.Helper()
	var id uint64
	if _, err := fmt.Sscan(s, &id); err != nil {
		t.Fatalf("member ID %q: %v", s, err)
	}
	return id
}

// The page is served with the API's TLS: over https it works as over
// plain HTTP (it only uses its own origin), and with --client-cert-auth it
// is refused to a client without a certificate of the cluster CA.
func TestUIOverTLS(t *testing.T) {
	ca := newTestCA(t)
	node := startTLSBootstrap(t, ca, "")
	b := newBrowser(t, 1000, 800, chromedp.Flag("ignore-certificate-errors", true)) // the test CA is not the browser's
	b.do("open the page over https", chromedp.Navigate("https://"+node.api+"/"))
	b.waitPage("the node's card", 10*time.Second, func(v pageView) bool {
		return len(v.Cards) == 1 && v.Cards[0].Role == "voter" && v.Cards[0].State == "ready" && v.Banner == ""
	})

	strict := startTLSBootstrap(t, ca, "operator", "--client-cert-auth")
	for _, c := range []struct {
		cert string
		want int
	}{{"", http.StatusUnauthorized}, {"operator", http.StatusOK}} {
		resp, err := httpsClient(ca.client(c.cert)).Get("https://" + strict.api + "/")
		if err != nil {
			t.Fatalf("GET / with certificate %q: %v", c.cert, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want || (c.want == http.StatusOK && !strings.Contains(string(body), "<title>kvd cluster</title>")) {
			t.Fatalf("GET / with certificate %q: %d (want %d)\n%.300s", c.cert, resp.StatusCode, c.want, body)
		}
	}
}
