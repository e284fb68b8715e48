package web

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		if k == "Host" {
			r.Host = v
			continue
		}
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestHandlerRoutes(t *testing.T) {
	h := Handler()
	tests := []struct {
		method, path string
		status       int
		ctype        string
		contains     string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `src="/assets/app.js"`},
		{"GET", "/?room=abc", 200, "text/html; charset=utf-8", "data-testid=\"share-link\""},
		{"GET", "/turn", 200, "text/html; charset=utf-8", `src="/assets/turn.js"`},
		{"HEAD", "/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/assets/app.js", 200, "text/javascript; charset=utf-8", "HubClient"},
		{"GET", "/assets/app.css", 200, "text/css; charset=utf-8", ":root"},
		{"GET", "/assets/icon.svg", 200, "image/svg+xml", "<svg"},
		{"GET", "/assets/", 404, "", ""},
		{"GET", "/assets/nope.js", 404, "", ""},
		{"GET", "/assets/../web.go", 404, "", ""},
		{"GET", "/assets/%2e%2e/web.go", 404, "", ""},
		{"GET", "/assets/.hidden", 404, "", ""},
		{"GET", "/index.html", 404, "", ""},
		{"GET", "/static/index.html", 404, "", ""},
		{"GET", "/turn/", 404, "", ""},
		{"POST", "/", 405, "", ""},
		{"DELETE", "/assets/app.js", 405, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			w := get(t, h, tt.method, tt.path, nil)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d", w.Code, tt.status)
			}
			if tt.status != 200 {
				if tt.status == 405 && w.Header().Get("Allow") != "GET, HEAD" {
					t.Errorf("405 without Allow: GET, HEAD")
				}
				return
			}
			if got := w.Header().Get("Content-Type"); got != tt.ctype {
				t.Errorf("Content-Type %q, want %q", got, tt.ctype)
			}
			if w.Header().Get("ETag") == "" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("missing ETag or nosniff: %v", w.Header())
			}
			if w.Header().Get("Referrer-Policy") != "no-referrer" {
				t.Errorf("Referrer-Policy %q", w.Header().Get("Referrer-Policy"))
			}
			if tt.method == "HEAD" && w.Body.Len() != 0 {
				t.Errorf("HEAD returned a body")
			}
			if tt.contains != "" && !strings.Contains(w.Body.String(), tt.contains) {
				t.Errorf("body lacks %q", tt.contains)
			}
		})
	}
}

func TestConditionalGet(t *testing.T) {
	h := Handler()
	first := get(t, h, "GET", "/assets/peer.js", nil)
	etag := first.Header().Get("ETag")
	if first.Code != 200 || etag == "" {
		t.Fatalf("first GET: %d, ETag %q", first.Code, etag)
	}
	again := get(t, h, "GET", "/assets/peer.js", map[string]string{"If-None-Match": etag})
	if again.Code != http.StatusNotModified {
		t.Fatalf("If-None-Match with the current ETag: %d, want 304", again.Code)
	}
	other := get(t, h, "GET", "/assets/peer.js", map[string]string{"If-None-Match": `"stale"`})
	if other.Code != 200 {
		t.Fatalf("If-None-Match with a stale ETag: %d, want 200", other.Code)
	}
}

func TestContentSecurityPolicy(t *testing.T) {
	h := Handler()
	tests := []struct {
		host      string
		wantWS    bool
		forbidden string
	}{
		{"127.0.0.1:8080", true, ""},
		{"[::1]:8443", true, ""},
		{"demo.example.com", true, ""},
		{"evil.example; script-src *", false, "script-src *"},
		{"evil.example\r\nX: y", false, "X: y"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			w := get(t, h, "GET", "/", map[string]string{"Host": tt.host})
			csp := w.Header().Get("Content-Security-Policy")
			if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "script-src 'self'") {
				t.Fatalf("CSP %q lacks the self-only defaults", csp)
			}
			if got := strings.Contains(csp, "ws://"+tt.host); got != tt.wantWS {
				t.Errorf("CSP %q names ws://%s: %v, want %v", csp, tt.host, got, tt.wantWS)
			}
			if tt.forbidden != "" && strings.Contains(csp, tt.forbidden) {
				t.Errorf("CSP %q carries injected %q", csp, tt.forbidden)
			}
		})
	}
	if csp := get(t, h, "GET", "/assets/app.js", nil).Header().Get("Content-Security-Policy"); csp != "" {
		t.Errorf("assets need no CSP, got %q", csp)
	}
}

// Every file a page references (script, stylesheet, icon, module import)
// must be embedded and served, and the pages must not pull anything from
// another origin (no CDN).
func TestReferencedAssetsExist(t *testing.T) {
	h := Handler()
	ref := regexp.MustCompile(`(?:src|href)="([^"#]+)"`)
	imp := regexp.MustCompile(`(?m)^\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'|^import\s+'([^']+)'`)
	seen := map[string]bool{}
	var queue []string
	for _, page := range []string{"/", "/turn"} {
		body := get(t, h, "GET", page, nil).Body.String()
		for _, m := range ref.FindAllStringSubmatch(body, -1) {
			u := m[1]
			if strings.Contains(u, "//") {
				t.Errorf("%s references another origin: %s", page, u)
				continue
			}
			if strings.HasPrefix(u, "/assets/") {
				queue = append(queue, u)
			}
		}
	}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		if seen[u] {
			continue
		}
		seen[u] = true
		w := get(t, h, "GET", u, nil)
		if w.Code != 200 {
			t.Errorf("referenced %s: status %d", u, w.Code)
			continue
		}
		if !strings.HasSuffix(u, ".js") {
			continue
		}
		for _, m := range imp.FindAllStringSubmatch(w.Body.String(), -1) {
			spec := m[1] + m[2]
			if !strings.HasPrefix(spec, "./") {
				t.Errorf("%s imports %q: only relative module imports are allowed", u, spec)
				continue
			}
			queue = append(queue, "/assets/"+strings.TrimPrefix(spec, "./"))
		}
	}
	// Nothing embedded is dead weight: every asset is reachable from a page.
	assets, err := fs.ReadDir(static, "static/assets")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range assets {
		if !seen["/assets/"+e.Name()] {
			t.Errorf("asset %s is embedded but no page uses it", e.Name())
		}
	}
}

// The Go constant documents the limit the JavaScript enforces; keep them equal.
func TestMaxFileBytesMatchesScript(t *testing.T) {
	body := get(t, Handler(), "GET", "/assets/transfer.js", nil).Body.String()
	m := regexp.MustCompile(`export const MAX_FILE_BYTES = ([0-9* ]+);`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("MAX_FILE_BYTES not found in transfer.js")
	}
	n := 1
	for _, f := range strings.Split(m[1], "*") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			t.Fatalf("MAX_FILE_BYTES %q: %v", m[1], err)
		}
		n *= v
	}
	if n != MaxFileBytes {
		t.Fatalf("transfer.js MAX_FILE_BYTES = %d, web.MaxFileBytes = %d", n, MaxFileBytes)
	}
}

// FuzzHandlerPath: no request path makes the handler panic or serve
// anything outside the pages and the assets directory.
func FuzzHandlerPath(f *testing.F) {
	for _, s := range []string{"/", "/turn", "/assets/app.js", "/assets/../web.go", "/assets/%00", "//x", "/assets/a/b.js"} {
		f.Add(s)
	}
	h := Handler()
	files := loadFiles()
	f.Fuzz(func(t *testing.T, p string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.Path = p
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == 404 {
			return
		}
		if w.Code != 200 {
			t.Fatalf("path %q: status %d", p, w.Code)
		}
		if _, ok := pages[p]; ok {
			return
		}
		name, ok := strings.CutPrefix(p, assetPrefix)
		if !ok || strings.Contains(name, "/") || files["assets/"+name] == nil {
			t.Fatalf("path %q served outside the pages and assets", p)
		}
	})
}
