// Package web serves the rtcsuite browser pages: the peer-to-peer demo at
// "/" and the TURN tester at "/turn". They are static files embedded with
// the embed package (plain JavaScript modules and CSS, no build step, no CDN) and
// speak the signaling hub's wire protocol (docs/protocol.md) on the same
// origin: GET /ws for the WebSocket and GET /ice for ICE servers.
//
// The package imports nothing from the project; cmd/signal mounts Handler
// at "/" next to the hub's own routes.
//
// # File transfer and hashing
//
// Files go over a data channel of their own in chunks of 16 KiB, paced with
// bufferedAmountLowThreshold. The receiver checks a SHA-256 digest that the
// sender computed. SubtleCrypto exists only in secure contexts (HTTPS, or
// http://localhost and http://127.0.0.1) and cannot hash a stream, so both
// sides hash the whole file in memory: that is why a file may be at most
// MaxFileBytes. Over plain HTTP to another device the page says so and marks
// received files "not verified" instead of pretending.
//
// # Calls, names, invites and the relay switch
//
// The camera and microphone come from getUserMedia, which browsers offer
// only in secure contexts too: over plain HTTP from another host the page
// disables the call button and says why. Tracks go to every peer (a mesh).
// Ticking "Relay only" mid-call replaces that page's RTCPeerConnections
// (static/assets/peer.js explains why an ICE restart is not enough in
// Chromium). The display name is kept in localStorage and sent at join; a
// join token's name wins. In token mode the share link carries an invite the
// hub mints for the room, never the page's own token.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

// MaxFileBytes is the largest file the page sends or accepts (64 MiB). It
// matches MAX_FILE_BYTES in static/assets/transfer.js.
const MaxFileBytes = 64 << 20

//go:embed static
var static embed.FS

// pages maps the page routes to their files under static/.
var pages = map[string]string{
	"/":     "index.html",
	"/turn": "turn.html",
}

// assetPrefix is the URL prefix of everything under static/assets.
const assetPrefix = "/assets/"

type file struct {
	name  string
	body  []byte
	ctype string
	etag  string
}

var loadFiles = sync.OnceValue(func() map[string]*file {
	files := make(map[string]*file)
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		rel := strings.TrimPrefix(p, "static/")
		files[rel] = &file{
			name:  path.Base(rel),
			body:  body,
			ctype: contentType(rel),
			etag:  `"` + hex.EncodeToString(sum[:12]) + `"`,
		}
		return nil
	})
	if err != nil {
		// The embedded tree is fixed at build time; a failure here is a
		// build defect, which the package tests catch.
		panic("web: reading embedded files: " + err.Error())
	}
	return files
})

// contentType is fixed per extension so responses do not depend on the
// host's MIME tables.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".json":
		return "application/json"
	}
	return "application/octet-stream"
}

// Handler returns the handler for the pages and their assets. It answers
// GET and HEAD only (405 otherwise) and 404 for unknown paths, sets an ETag
// on every file (conditional requests get 304), and sends a restrictive
// Content-Security-Policy that allows scripts, styles and connections to
// the page's own origin only.
func Handler() http.Handler {
	files := loadFiles()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var f *file
		if name, ok := pages[r.URL.Path]; ok {
			f = files[name]
		} else if rest, ok := strings.CutPrefix(r.URL.Path, assetPrefix); ok && validAssetName(rest) {
			f = files["assets/"+rest]
		}
		if f == nil {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.ctype)
		h.Set("ETag", f.etag)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		// Room names (and join tokens) travel in the page URL: never leak
		// them to other sites.
		h.Set("Referrer-Policy", "no-referrer")
		if strings.HasSuffix(f.name, ".html") {
			h.Set("Content-Security-Policy", csp(r.Host))
			h.Set("X-Frame-Options", "DENY")
		}
		http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
	})
}

// validAssetName accepts one path element of safe characters: no
// subdirectories, no dot files.
func validAssetName(s string) bool {
	if s == "" || s[0] == '.' || len(s) > 64 {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// csp builds the Content-Security-Policy. connect-src names the WebSocket
// origin explicitly because older browsers do not let 'self' match ws:.
func csp(host string) string {
	connect := "'self'"
	if validHost(host) {
		connect += " ws://" + host + " wss://" + host
	}
	return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
		"connect-src " + connect + "; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
}

// validHost accepts a host[:port] made of hostname, IPv4 or bracketed IPv6
// characters, so a hostile Host header cannot inject policy directives.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for _, c := range h {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '-', c == ':', c == '[', c == ']':
		default:
			return false
		}
	}
	return true
}
