package signaling

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// LoopbackOrigins are the origin patterns of every page served from this
// machine: any port on localhost, 127.0.0.1 and [::1], over HTTP or HTTPS.
// A development hub adds them to AllowedOrigins so a front-end dev server
// (Vite on localhost:5173, webpack on localhost:8081) may connect.
var LoopbackOrigins = []string{
	"http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*",
	"https://localhost:*", "https://127.0.0.1:*", "https://[::1]:*",
}

// SameOrigin is the AllowedOrigins entry for pages served by the hub's own
// host (the default when AllowedOrigins is empty), for lists that add other
// origins to it.
const SameOrigin = "self"

// originMatches reports whether origin matches one AllowedOrigins entry:
// "*", SameOrigin (origin's host is host, the request's Host), an exact
// origin (case-insensitive, trailing slash ignored), or scheme://host:* for
// that scheme and host on any port (or none).
func originMatches(pattern, origin, host string) bool {
	pattern = strings.TrimSuffix(pattern, "/")
	if pattern == "*" || strings.EqualFold(pattern, origin) {
		return true
	}
	if pattern == SameOrigin {
		u, err := url.Parse(origin)
		return err == nil && u.Host != "" && strings.EqualFold(u.Host, host)
	}
	prefix, ok := strings.CutSuffix(pattern, ":*")
	if !ok {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || u.Path != "" || u.RawQuery != "" || u.User != nil {
		return false
	}
	if !strings.EqualFold(u.Scheme+"://"+hostOnly(u.Host), prefix) {
		return false
	}
	p := u.Port()
	return p == "" || strings.Trim(p, "0123456789") == ""
}

// hostOnly drops the port of host:port, keeping IPv6 brackets.
func hostOnly(hostport string) string {
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.HasSuffix(hostport, "]") {
		return hostport[:i]
	}
	return hostport
}

// validOriginPattern reports whether an AllowedOrigins entry is "*", an
// origin like https://app.example.com, or such an origin with port "*".
func validOriginPattern(o string) bool {
	if o == "*" || o == SameOrigin {
		return true
	}
	o = strings.TrimSuffix(o, "/")
	if base, ok := strings.CutSuffix(o, ":*"); ok {
		o = base
	}
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Path == "" && u.RawQuery == "" && u.User == nil
}

// refuseOrigin answers 403 to a browser whose Origin is not allowed, and
// says how an operator allows it: browsers hide the body from scripts, but
// developers read it in the network panel.
func refuseOrigin(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if len(origin) > 200 || strings.ContainsFunc(origin, func(c rune) bool { return c < 0x20 || c > 0x7e }) {
		origin = "<your page's origin>"
	}
	http.Error(w, fmt.Sprintf("origin %s not allowed: start the hub with --allowed-origin %s "+
		"(repeatable; -dev allows every http://localhost:* origin)", origin, origin), http.StatusForbidden)
}
