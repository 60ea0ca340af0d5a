package ui

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// fakeNode serves the page and answers its API calls as a node would, in
// Connect's JSON, recording the join secret header each call carried.
type fakeNode struct {
	down    atomic.Bool // Members fails: the page shows its error banner
	mu      sync.Mutex
	secrets map[string][]string // "KV/Put" → the Kvd-Join-Secret of each call
}

// fakeAnswers: a leader with an API address (a link on its card) and an
// observer down for a while (its state in the error colour).
var fakeAnswers = map[string]string{
	"Cluster/Members": `{"leaderId": "1", "members": [
		{"id": "1", "role": "ROLE_VOTER", "state": "ready", "ready": true, "leader": true, "appliedIndex": "9", "apiAddr": "127.0.0.1:7070", "raftAddr": "127.0.0.1:7170"},
		{"id": "2", "role": "ROLE_OBSERVER", "state": "unreachable", "appliedIndex": "4", "lag": "5", "downForMs": "65000", "reason": "dial tcp: connection refused", "raftAddr": "127.0.0.1:7171"}]}`,
	"Cluster/Status": `{"id": "1", "role": "ROLE_VOTER", "state": "ready", "leaderId": "1", "term": "2", "appliedIndex": "9"}`,
	"Cluster/Remove": `{}`,
	"KV/Put":         `{"revision": "10"}`,
	"KV/Get":         `{"kv": {"key": "aw==", "value": "dg==", "createRevision": "10", "modRevision": "10", "version": "1"}}`,
	"KV/Delete":      `{"revision": "11"}`,
}

func newFakeNode(t *testing.T) (*fakeNode, string) {
	f := &fakeNode{secrets: map[string][]string{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/ui/"):
		Handler().ServeHTTP(w, r)
		return
	case r.URL.Path == "/metrics":
		return
	}
	proc := strings.TrimPrefix(r.URL.Path, "/kvd.v1.")
	answer, ok := fakeAnswers[proc]
	if !ok {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	f.secrets[proc] = append(f.secrets[proc], r.Header.Get("Kvd-Join-Secret"))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if proc == "Cluster/Members" && f.down.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		answer = `{"code": "unavailable", "message": "fake node: not ready"}`
	}
	io.WriteString(w, answer)
}

func (f *fakeNode) secretsOf(proc string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.secrets[proc]...)
}

// waitFor polls the page until the JavaScript expression cond is true, for
// up to 30 s: long, for a page that
// polls once a second, because CI runs this package beside e2e's own
// Chromium and kvd processes on two cores (a page once showed nothing of
// its first polls within 10 s there). On failure it prints the page's text
// and what the page fetched, with timings, to tell a hung request from a
// script that did not run.
func waitFor(t *testing.T, ctx context.Context, what, cond string) {
	t.Helper()
	const wait = 30 * time.Second
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := chromedp.Run(tctx, chromedp.Evaluate[bool](cond))
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	fetched, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.readyState + "\n" + performance.getEntriesByType("resource")
  .map((e) => e.name + " started " + e.startTime.toFixed(0) + " ms, took " + e.duration.toFixed(0) + " ms").join("\n")`))
	t.Fatalf("no %s within %v\n---- page text ----\n%s\n---- ready state, fetches ----\n%s", what, wait, text, fetched)
}

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// colorScheme makes the page's prefers-color-scheme light or dark.
func colorScheme(scheme string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		return err
	})
}

// lowContrastJS lists the visible text whose colour has a contrast below
// 4.5:1 (WCAG's level AA for normal text) against the first opaque
// background behind it.
const lowContrastJS = `(() => {
  const rgb = (s) => (s.match(/[\d.]+/g) || ["0", "0", "0", "0"]).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => v / 255)
    .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4))
    .reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
  const behind = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const low = [];
  for (const el of document.querySelectorAll("body *")) {
    const text = [...el.childNodes].filter((n) => n.nodeType === 3).map((n) => n.data).join("").trim();
    if (!text || el.getClientRects().length === 0 || getComputedStyle(el).visibility !== "visible") continue;
    const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(behind(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) low.push(el.tagName.toLowerCase() + "." + el.className + " " + JSON.stringify(text.slice(0, 40)) + ": " + ratio.toFixed(2) + ":1");
  }
  return low;
})()`

// In the light and the dark palette, every text the page shows keeps a
// contrast of at least 4.5:1: the error banner, member cards and their
// links, the timeline, the forms.
func TestTextContrastInChromium(t *testing.T) {
	ctx := chromiumTab(t)
	for _, scheme := range []string{"light", "dark"} {
		t.Run(scheme, func(t *testing.T) {
			node, url := newFakeNode(t)
			do(t, ctx, "open the page", colorScheme(scheme), chromedp.Navigate(url+"/ui/"))
			waitFor(t, ctx, "a member card with a link", `document.querySelector(".member a") !== null`)
			node.down.Store(true)
			waitFor(t, ctx, "the error banner", `!document.querySelector("#banner").hidden`)
			dark, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`matchMedia("(prefers-color-scheme: dark)").matches`))
			if err != nil || dark != (scheme == "dark") {
				t.Fatalf("prefers-color-scheme: dark is %v, want %v (%v)", dark, scheme == "dark", err)
			}
			low, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](lowContrastJS))
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range low {
				t.Errorf("%s: contrast below 4.5:1: %s", scheme, l)
			}
		})
	}
}

// The join secret typed into the page goes with promote and remove, the
// calls the node checks it for, and not with key writes, which need none.
func TestSecretSentOnlyWithMembershipCalls(t *testing.T) {
	ctx := chromiumTab(t)
	node, url := newFakeNode(t)
	const secret = "page-test-secret"
	do(t, ctx, "open the page and type the secret", chromedp.Navigate(url+"/ui/"),
		chromedp.SendKeys(chromedp.CSS("#secret"), secret))
	waitFor(t, ctx, "the member cards", `document.querySelectorAll(".member").length === 2`)

	do(t, ctx, "put from the page",
		chromedp.SendKeys(chromedp.CSS("#put-key"), "k"),
		chromedp.SendKeys(chromedp.CSS("#put-value"), "v"),
		chromedp.Click(chromedp.CSS("#put-form button")))
	waitFor(t, ctx, "the put's value shown", `!document.querySelector("#value").hidden`)
	do(t, ctx, "delete from the page", chromedp.Click(chromedp.CSS("#delete")))
	waitFor(t, ctx, "the delete's result", `document.querySelector("#keys-result").innerText.startsWith("deleted k")`)

	// Clicked from inside the page, query and click in one step: the member
	// cards are re-rendered on every poll, so a node chromedp found first
	// can be gone by its click ("Could not find node with given id").
	const remove = `(() => { const b = document.querySelector('.member[data-id="2"] button[data-action="remove"]'); if (!b) return false; b.click(); return true })()`
	waitFor(t, ctx, "arm remove", remove)
	waitFor(t, ctx, "the confirm button", `document.querySelector('.member[data-id="2"]').innerText.includes("Confirm remove")`)
	waitFor(t, ctx, "confirm remove", remove)
	waitFor(t, ctx, "the removal done", `document.querySelector("#action-result").innerText.includes("done")`)

	for proc, want := range map[string]string{"KV/Put": "", "KV/Delete": "", "Cluster/Remove": secret} {
		if got := node.secretsOf(proc); fmt.Sprint(got) != fmt.Sprint([]string{want}) {
			t.Errorf("%s calls carried the join secret headers %q, want one call with %q", proc, got, want)
		}
	}
}
