package signaling

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestInvite(t *testing.T) {
	th := newTestHub(t, Config{TokenSecret: testSecret, InviteTTL: 10 * time.Minute})
	exp := time.Now().Add(time.Hour)
	a := th.dial(t)
	// Before joining there is no room to invite to.
	if _, err := a.Invite(ctxT(t)); !isCode(err, CodeBadMessage) {
		t.Fatalf("invite before join = %v, want bad-message", err)
	}
	ownToken := mustToken(t, testSecret, TokenClaims{Room: "team", Name: "Ada", Expires: exp})
	wa, err := a.Join(ctxT(t), "team", ownToken)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	inv, err := a.Invite(ctxT(t))
	if err != nil {
		t.Fatalf("invite: %v", err)
	}
	if inv.Room != "team" || inv.Token == "" || inv.Token == ownToken {
		t.Fatalf("invite = %+v: want a fresh token for room team", inv)
	}
	claims, err := verifyToken(testSecret, inv.Token, "team", time.Now(), 0)
	if err != nil {
		t.Fatalf("the invite does not verify: %v", err)
	}
	if claims.Room != "team" || claims.Name != "" {
		t.Fatalf("invite claims %+v: want room team, no name", claims)
	}
	if got := time.Unix(inv.Expires, 0); !got.Equal(claims.Expires) || got.Before(before.Add(10*time.Minute-time.Second)) || got.After(time.Now().Add(10*time.Minute)) {
		t.Fatalf("invite expires %v (claims %v), want 10 min from now", got, claims.Expires)
	}
	if _, err := verifyToken(testSecret, inv.Token, "team", claims.Expires.Add(time.Minute), 0); err == nil {
		t.Fatalf("the invite still admits after its expiry")
	}

	// The invite admits to its room, under the name the invitee picks.
	b := th.dial(t)
	if _, err := b.JoinAs(ctxT(t), "elsewhere", inv.Token, "Bob"); !isCode(err, CodeUnauthorized) {
		t.Fatalf("invite used for another room: %v, want unauthorized", err)
	}
	wb, err := b.JoinAs(ctxT(t), "team", inv.Token, "Bob")
	if err != nil {
		t.Fatalf("join with the invite: %v", err)
	}
	if wb.Name != "Bob" || wb.Names[wa.ID] != "Ada" {
		t.Fatalf("invitee welcome %+v: want its own name Bob and Ada's", wb)
	}
	if m := expect(t, a, TypePeerJoined); m.ID != wb.ID || m.Name != "Bob" {
		t.Fatalf("peer-joined %+v", m)
	}
	// An invitee may invite in turn; the invite is again for the room only.
	inv2, err := b.Invite(ctxT(t))
	if err != nil || inv2.Token == "" {
		t.Fatalf("second invite = %+v, %v", inv2, err)
	}
	if c, err := verifyToken(testSecret, inv2.Token, "team", time.Now(), 0); err != nil || c.Room != "team" {
		t.Fatalf("second invite claims %+v, %v", c, err)
	}
	if v := th.metric(t, `signal_messages_received_total{type="invite"}`); v != "3" {
		t.Fatalf("invite messages counted %q, want 3", v)
	}
}

func TestInviteOpenHub(t *testing.T) {
	th := newTestHub(t, Config{})
	c, _ := th.join(t, "open-room")
	inv, err := c.Invite(ctxT(t))
	if err != nil || inv.Room != "open-room" || inv.Token != "" || inv.Expires != 0 {
		t.Fatalf("invite on an open hub = %+v, %v: want the room and no token", inv, err)
	}
}

func TestInviteTTLValidation(t *testing.T) {
	for _, ttl := range []time.Duration{time.Second, 8 * 24 * time.Hour, -time.Hour} {
		if _, err := NewHub(Config{InviteTTL: ttl, Logger: testLogger(t)}); err == nil || !strings.Contains(err.Error(), "InviteTTL") {
			t.Errorf("InviteTTL %v: NewHub = %v, want an InviteTTL error", ttl, err)
		}
	}
}

func isCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

func TestOriginPatterns(t *testing.T) {
	tests := []struct {
		pattern, origin string
		ok              bool
	}{
		{"*", "https://anything.example", true},
		{"https://app.example", "https://app.example", true},
		{"https://app.example/", "https://APP.example", true},
		{"https://app.example", "https://app.example:8443", false},
		{"http://localhost:*", "http://localhost:5173", true},
		{"http://localhost:*", "http://localhost", true},
		{"http://localhost:*", "https://localhost:5173", false},
		{"http://localhost:*", "http://localhost.evil.example:5173", false},
		{"http://localhost:*", "http://evil.example/localhost:1", false},
		{"http://127.0.0.1:*", "http://127.0.0.1:8081", true},
		{"http://127.0.0.1:*", "http://127.0.0.10:8081", false},
		{"http://[::1]:*", "http://[::1]:3000", true},
		{"http://[::1]:*", "http://[::2]:3000", false},
		{"http://localhost:*", "http://user@localhost:1", false},
		{"http://localhost:*", "http://localhost:1x", false},
		{"self", "http://hub.example:8080", true},
		{"self", "https://HUB.example:8080", true},
		{"self", "http://hub.example:8081", false},
	}
	for _, tt := range tests {
		if got := originMatches(tt.pattern, tt.origin, "hub.example:8080"); got != tt.ok {
			t.Errorf("originMatches(%q, %q) = %v, want %v", tt.pattern, tt.origin, got, tt.ok)
		}
	}
	for _, bad := range []string{"localhost:*", "http://localhost:*/x", "ftp://x:*", "http://:*"} {
		if validOriginPattern(bad) {
			t.Errorf("validOriginPattern(%q) = true", bad)
		}
	}
	for _, good := range LoopbackOrigins {
		if !validOriginPattern(good) {
			t.Errorf("validOriginPattern(%q) = false", good)
		}
	}
}

// TestLoopbackOriginsAndRefusal: a hub allowing LoopbackOrigins accepts a
// dev server's page on another local port; a foreign origin gets a 403
// whose body says how to allow it.
func TestLoopbackOriginsAndRefusal(t *testing.T) {
	th := newTestHub(t, Config{AllowedOrigins: LoopbackOrigins})
	c, err := Dial(ctxT(t), th.url, WithOrigin("http://localhost:5173"))
	if err != nil {
		t.Fatalf("dev server origin refused: %v", err)
	}
	c.Close()
	req, _ := http.NewRequest("GET", th.srv.URL+"/ws", nil)
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "--allowed-origin https://evil.example") {
		t.Fatalf("GET /ws from a foreign origin = %d %q: want 403 naming --allowed-origin", resp.StatusCode, body)
	}
}
