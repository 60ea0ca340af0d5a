package ui

import (
	"context"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

func TestHandlerServesThePageAndItsAssets(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /ui/: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Fatalf("Content-Security-Policy %q does not keep the page to its own origin", csp)
	}
	// Every asset the page or a script names is served, with its type.
	assets := regexp.MustCompile(`(?:src|href)="([a-z]+\.(?:js|css))"|from "\./([a-z]+\.js)"`)
	seen := map[string]bool{}
	queue := []string{string(page)}
	for len(queue) > 0 {
		src := queue[0]
		queue = queue[1:]
		for _, m := range assets.FindAllStringSubmatch(src, -1) {
			name := m[1] + m[2]
			if seen[name] {
				continue
			}
			seen[name] = true
			body, ctype := get(t, srv.URL+"/ui/"+name)
			if !strings.Contains(ctype, map[bool]string{true: "javascript", false: "css"}[strings.HasSuffix(name, ".js")]) {
				t.Errorf("%s served as %q", name, ctype)
			}
			queue = append(queue, body)
		}
	}
	if !seen["app.js"] || !seen["timeline.js"] || !seen["style.css"] {
		t.Fatalf("assets found: %v", seen)
	}
}

func get(t *testing.T, url string) (body, contentType string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	return string(b), resp.Header.Get("Content-Type")
}

// Nothing is fetched from elsewhere: no CDN, no web font. The only
// absolute URL is SVG's namespace name, which is never fetched.
func TestNoOutsideURLs(t *testing.T) {
	url := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	err := fs.WalkDir(static, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(path)
		if err != nil {
			return err
		}
		for _, u := range url.FindAllString(string(b), -1) {
			if u != "http://www.w3.org" {
				t.Errorf("%s names %s", path, u)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The page's pure functions (timeline, metrics, value display), run in
// Chromium by testdata/logic.html.
func TestPageLogicInChromium(t *testing.T) {
	ctx := chromiumTab(t)
	mux := http.NewServeMux()
	mux.Handle("/ui/", Handler())
	mux.Handle("/test/", http.StripPrefix("/test/", http.FileServer(http.Dir("testdata"))))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/test/logic.html")); err != nil {
		t.Fatalf("open the test page: %v", err)
	}
	type result struct {
		Name, Got, Want string
		OK              bool
	}
	var results []result
	deadline := time.Now().Add(10 * time.Second)
	for len(results) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("testdata/logic.html set no window.results within 10s (a script error? open it in a browser)")
		}
		tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		results, err = chromedp.Run(tctx, chromedp.Evaluate[[]result](`window.results || []`))
		tcancel()
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, r := range results {
		if !r.OK {
			t.Errorf("%s: got %s, want %s", r.Name, r.Got, r.Want)
		}
	}
	t.Logf("%d cases", len(results))
}

// chromiumTab starts a headless Chromium for the test and returns its tab.
func chromiumTab(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and chromium is missing (scripts/install-chromium): %v", err)
		}
		t.Skip("chromium is missing (scripts/install-chromium; CI=true makes this a failure)")
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU)...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first call starts the browser: no timeout on it (that would stop
	// the browser), so it only evaluates a constant.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`1`)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}
