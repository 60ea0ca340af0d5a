// Package ui serves kvd's cluster page: plain HTML, CSS and JavaScript
// embedded in the binary (no build step, nothing fetched from elsewhere).
//
// The page is mounted at /ui/ on the node's API port, so it is served with
// the API's TLS and client-certificate rules, and it talks to that node's
// own Connect API in JSON (Cluster/Members, Cluster/Status, KV/Range, ...)
// and reads its /metrics. Everything it shows is derived in the browser:
// the membership timeline comes from successive Members snapshots, taken
// once a second while the page is open.
//
//	mux.Handle("/ui/", ui.Handler())
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the page and its assets under /ui/.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree always has static/
	}
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Only this origin: no outside scripts, styles, fonts or frames.
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// Embedded files carry no modification time: revalidate, so a new
		// binary's page is never mixed with an old one's scripts.
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
