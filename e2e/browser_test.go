package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser is one headless Chromium tab, driven over the DevTools protocol.
type browser struct {
	t         *testing.T
	ctx       context.Context
	artifacts string
	shots     int
}

// chromium finds Debian's chromium: missing, the test fails under CI=true
// (scripts/test installs it) and is skipped otherwise.
func chromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and chromium is missing (scripts/install-chromium installs it): %v", err)
		}
		t.Skipf("browser test skipped: chromium is missing (apt-get install chromium, or scripts/install-chromium; CI=true makes this a failure)")
	}
	return path
}

// artifactsDir is where screenshots go, kept after the test:
// $KVD_E2E_ARTIFACTS/<test>, or else e2e/artifacts/<test> (git ignores
// it), emptied first of a previous run's screenshots.
func artifactsDir(t *testing.T) string {
	t.Helper()
	root := os.Getenv("KVD_E2E_ARTIFACTS")
	if root == "" {
		root = artifacts
	}
	dir := filepath.Join(root, t.Name())
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func newBrowser(t *testing.T, width, height int, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // root in CI containers
		chromedp.DisableGPU,
		chromedp.WindowSize(width, height),
	)
	opts = append(opts, extra...)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser: no timeout on it (it would stop the
	// browser), so this one only evaluates a constant.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`1`)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &browser{t: t, ctx: ctx, artifacts: artifactsDir(t)}
	t.Logf("browser screenshots: %s", b.artifacts)
	return b
}

// do runs steps within a bounded time.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail("%s: %v", what, err)
	}
}

// eval evaluates expr and decodes its JSON value into out.
func (b *browser) eval(expr string, out any) error {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr))
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

// text is what the page shows, for failure messages.
func (b *browser) text() string {
	var s string
	if err := b.eval(`document.body.innerText`, &s); err != nil {
		return "(page text unavailable: " + err.Error() + ")"
	}
	return s
}

// fail saves a screenshot, dumps the page's text and fails the test.
func (b *browser) fail(format string, args ...any) {
	b.t.Helper()
	b.screenshot("failure")
	args = append(args, b.text())
	b.t.Fatalf(format+"\n---- page text ----\n%s", args...)
}

// screenshot saves the whole page as NN-name.png and returns its path.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	b.shots++
	path := filepath.Join(b.artifacts, fmt.Sprintf("%02d-%s.png", b.shots, name))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	b.t.Logf("screenshot: %s", path)
	return path
}

// Screenshots outlive the test: under e2e/artifacts/<test> by default,
// where a failure's pictures can be looked at (and CI can keep them).
func TestBrowserArtifactsKept(t *testing.T) {
	t.Setenv("KVD_E2E_ARTIFACTS", "")
	dir := artifactsDir(t)
	if want := filepath.Join(artifacts, t.Name()); dir != want {
		t.Fatalf("screenshots go to %s, want %s", dir, want)
	}
	if err := os.WriteFile(filepath.Join(dir, "01-x.png"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if again := artifactsDir(t); again != dir {
		t.Fatalf("second call: %s, want %s", again, dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "01-x.png")); !os.IsNotExist(err) {
		t.Fatalf("a previous run's screenshot is left in %s (%v)", dir, err)
	}
	os.RemoveAll(dir)
}
