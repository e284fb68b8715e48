package signaling

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func mustToken(t testing.TB, secret []byte, c TokenClaims) string {
	t.Helper()
	tok, err := MintToken(secret, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestMintTokenRejectsBadClaims(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	for _, c := range []TokenClaims{
		{Room: "", Expires: exp},
		{Room: "a/b", Expires: exp},
		{Room: "r"},
		{Room: "r", Name: "a\nb", Expires: exp},
	} {
		if _, err := MintToken(testSecret, c); err == nil {
			t.Errorf("MintToken(%+v) succeeded", c)
		}
	}
	if _, err := MintToken(nil, TokenClaims{Room: "r", Expires: exp}); err == nil {
		t.Error("MintToken without secret succeeded")
	}
}

func TestJoinTokens(t *testing.T) {
	th := newTestHub(t, Config{TokenSecret: testSecret})
	exp := time.Now().Add(time.Hour)
	hs512, err := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"room": "r", "exp": exp.Unix()}).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	noExp, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"room": "r"}).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	algNone := b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64([]byte(`{"room":"r","exp":`+itoa64(exp.Unix())+`}`)) + "."

	bad := map[string]string{
		"no token":     "",
		"garbage":      "not.a.jwt",
		"expired":      mustToken(t, testSecret, TokenClaims{Room: "r", Expires: time.Now().Add(-time.Minute)}),
		"other room":   mustToken(t, testSecret, TokenClaims{Room: "other", Expires: exp}),
		"other secret": mustToken(t, []byte("another-secret-another-secret!!"), TokenClaims{Room: "r", Expires: exp}),
		"alg none":     algNone,
		"HS512":        hs512,
		"no expiry":    noExp,
	}
	c := th.dial(t)
	for name, tok := range bad {
		_, err := c.Join(ctxT(t), "r", tok)
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeUnauthorized {
			t.Errorf("%s: join = %v, want unauthorized", name, err)
		}
		if tok != "" && e != nil && strings.Contains(e.Message, tok) {
			t.Errorf("%s: error message echoes the token", name)
		}
	}
	// The same connection can still join with a good token; the token's
	// name counts, the join's does not.
	wa, err := c.JoinAs(ctxT(t), "r", mustToken(t, testSecret, TokenClaims{Room: "r", Name: "Ada", Expires: exp}), "Mallory")
	if err != nil || wa.Name != "Ada" {
		t.Fatalf("join with a valid token = %+v, %v", wa, err)
	}
	b := th.dial(t)
	wb, err := b.Join(ctxT(t), "r", mustToken(t, testSecret, TokenClaims{Room: "*", Name: "Bob", Expires: exp}))
	if err != nil {
		t.Fatalf("join with a wildcard token: %v", err)
	}
	if wb.Names[wa.ID] != "Ada" {
		t.Fatalf("welcome names = %v", wb.Names)
	}
	if m := expect(t, c, TypePeerJoined); m.Name != "Bob" || m.ID != wb.ID {
		t.Fatalf("peer-joined = %+v", m)
	}
	if v := th.metric(t, `signal_errors_total{code="unauthorized"}`); v != itoa64(int64(len(bad))) {
		t.Fatalf("unauthorized errors = %q, want %d", v, len(bad))
	}
}

func itoa64(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestOrigins(t *testing.T) {
	open := newTestHub(t, Config{}) // same-origin only
	listed := newTestHub(t, Config{AllowedOrigins: []string{"https://app.example"}})
	tests := []struct {
		name   string
		th     *testHub
		origin string
		ok     bool
	}{
		{"no origin (not a browser)", open, "", true},
		{"same origin", open, open.srv.URL, true},
		{"cross origin", open, "https://evil.example", false},
		{"listed", listed, "https://app.example", true},
		{"not listed", listed, "https://evil.example", false},
		{"same origin but not listed", listed, listed.srv.URL, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []DialOption
			if tt.origin != "" {
				opts = append(opts, WithOrigin(tt.origin))
			}
			c, err := Dial(ctxT(t), tt.th.url, opts...)
			if tt.ok {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				c.Close()
			} else if !isHTTPStatus(err, http.StatusForbidden) {
				t.Fatalf("Dial = %v, want HTTP 403", err)
			}
			req, _ := http.NewRequest("GET", tt.th.srv.URL+"/ice", nil)
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if want := map[bool]int{true: 200, false: 403}[tt.ok]; resp.StatusCode != want {
				t.Fatalf("GET /ice = %d, want %d", resp.StatusCode, want)
			}
			if tt.ok && tt.origin != "" && resp.Header.Get("Access-Control-Allow-Origin") != tt.origin {
				t.Fatalf("no CORS header for an allowed origin")
			}
		})
	}
	if v := open.metric(t, `signal_rejected_connections_total{reason="origin"}`); v != "1" {
		t.Fatalf("origin rejections = %q", v)
	}
}

func TestICEEndpoint(t *testing.T) {
	var minted []string
	th := newTestHub(t, Config{
		TokenSecret: testSecret,
		ICEServers: func(id string) ([]ICEServer, time.Time) {
			minted = append(minted, id)
			return []ICEServer{{URLs: []string{"turn:127.0.0.1:3478"}, Username: "1:" + id, Credential: "pw"}}, time.Unix(1900000000, 0)
		},
	})
	tok := mustToken(t, testSecret, TokenClaims{Room: "any", Expires: time.Now().Add(time.Hour)})
	get := func(path, bearer string) (int, []byte) {
		req, _ := http.NewRequest("GET", th.srv.URL+path, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: Cache-Control %q", path, resp.Header.Get("Cache-Control"))
		}
		return resp.StatusCode, b
	}
	if code, body := get("/ice", ""); code != 401 || !strings.Contains(string(body), CodeUnauthorized) {
		t.Fatalf("GET /ice without token = %d %s", code, body)
	}
	if code, _ := get("/ice?token=garbage", ""); code != 401 {
		t.Fatalf("GET /ice with a bad token = %d", code)
	}
	for _, tc := range []struct{ path, bearer string }{{"/ice", tok}, {"/ice?token=" + tok, ""}} {
		code, body := get(tc.path, tc.bearer)
		var r struct {
			ICEServers []ICEServer `json:"iceServers"`
			Expires    int64       `json:"expires"`
		}
		if code != 200 || json.Unmarshal(body, &r) != nil || len(r.ICEServers) != 1 || r.Expires != 1900000000 {
			t.Fatalf("GET /ice = %d %s", code, body)
		}
		if !strings.HasPrefix(r.ICEServers[0].Username, "1:ice-") {
			t.Fatalf("minted for %q, want an ice- id", r.ICEServers[0].Username)
		}
	}
	if len(minted) != 2 || minted[0] == minted[1] {
		t.Fatalf("minted for %v, want two distinct ids", minted)
	}
}

func TestICERefresh(t *testing.T) {
	old := minICERefresh
	minICERefresh = time.Millisecond
	t.Cleanup(func() { minICERefresh = old })
	var n atomic.Int64
	th := newTestHub(t, Config{
		ICEServers: func(id string) ([]ICEServer, time.Time) {
			return []ICEServer{{URLs: []string{"turn:127.0.0.1:3478"}, Username: itoa64(n.Add(1)) + ":" + id, Credential: "pw"}},
				time.Now().Add(20 * time.Millisecond)
		},
	})
	c, w := th.join(t, "ice")
	seen := map[string]bool{w.ICEServers[0].Username: true}
	for range 3 {
		m := expect(t, c, TypeICEServers)
		if len(m.ICEServers) != 1 || seen[m.ICEServers[0].Username] || !strings.HasSuffix(m.ICEServers[0].Username, ":"+w.ID) {
			t.Fatalf("ice-servers = %+v, want fresh credentials for %s", m.ICEServers, w.ID)
		}
		seen[m.ICEServers[0].Username] = true
	}
}
