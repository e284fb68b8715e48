package signaling

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestNewHubValidates(t *testing.T) {
	_, err := NewHub(Config{
		RoomCapacity:    -1,
		TokenSecret:     []byte("short"),
		AllowedOrigins:  []string{"example.com", "https://ok.example", "https://x.example/path"},
		MaxMessageBytes: 10,
		SendQueueBytes:  -1,
	})
	if err == nil {
		t.Fatal("NewHub accepted a bad config")
	}
	for _, want := range []string{"RoomCapacity", "TokenSecret", `"example.com"`, `"https://x.example/path"`, "MaxMessageBytes", "SendQueueBytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "ok.example") {
		t.Errorf("error %q complains about a valid origin", err)
	}
}

func TestJoinPresenceAndSignals(t *testing.T) {
	th := newTestHub(t, Config{
		ICEServers: func(id string) ([]ICEServer, time.Time) {
			return []ICEServer{{URLs: []string{"stun:127.0.0.1:3478"}}, {URLs: []string{"turn:127.0.0.1:3478"}, Username: "u:" + id, Credential: "c"}}, time.Time{}
		},
	})
	a, wa := th.join(t, "room1")
	if wa.ID == "" || wa.Room != "room1" || len(wa.Peers) != 0 || wa.Polite || wa.Resume == "" || wa.Version != ProtocolVersion {
		t.Fatalf("first welcome = %+v", wa)
	}
	if len(wa.ICEServers) != 2 || wa.ICEServers[1].Username != "u:"+wa.ID {
		t.Fatalf("welcome iceServers = %+v, want minted for %s", wa.ICEServers, wa.ID)
	}
	b, wb := th.join(t, "room1")
	if !slices.Equal(wb.Peers, []string{wa.ID}) || !wb.Polite || wb.ID == wa.ID {
		t.Fatalf("second welcome = %+v, want peers [%s] and polite", wb, wa.ID)
	}
	if m := expect(t, a, TypePeerJoined); m.ID != wb.ID {
		t.Fatalf("peer-joined = %+v, want id %s", m, wb.ID)
	}
	// Another room is separate.
	_, wc := th.join(t, "room2")
	if len(wc.Peers) != 0 {
		t.Fatalf("room2 welcome lists %v", wc.Peers)
	}

	// Signals arrive in order, with "from" stamped by the hub.
	const n = 50
	for i := range n {
		if err := a.Signal(wb.ID, map[string]int{"seq": i}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		m := expect(t, b, TypeSignal)
		var d struct{ Seq int }
		if err := json.Unmarshal(m.Data, &d); err != nil || d.Seq != i || m.From != wa.ID {
			t.Fatalf("signal %d = %+v (%v), want seq %d from %s", i, m, err, i, wa.ID)
		}
	}
	if err := b.SendRaw([]byte(`{"type":"signal","to":"` + wa.ID + `","from":"spoofed","data":{"x":1}}`)); err != nil {
		t.Fatal(err)
	}
	if m := expect(t, a, TypeSignal); m.From != wb.ID || string(m.Data) != `{"x":1}` {
		t.Fatalf("spoofed signal arrived as %+v", m)
	}

	// Leave keeps the connection; the room hears about it; rejoining gets
	// a fresh id.
	if err := b.Leave(); err != nil {
		t.Fatal(err)
	}
	if m := expect(t, a, TypePeerLeft); m.ID != wb.ID {
		t.Fatalf("peer-left = %+v", m)
	}
	wb2, err := b.Join(ctxT(t), "room1", "")
	if err != nil {
		t.Fatal(err)
	}
	if wb2.ID == wb.ID || !slices.Equal(wb2.Peers, []string{wa.ID}) {
		t.Fatalf("rejoin welcome = %+v", wb2)
	}
	expect(t, a, TypePeerJoined)
	// Closing the socket normally leaves at once.
	b.Close()
	if m := expect(t, a, TypePeerLeft); m.ID != wb2.ID {
		t.Fatalf("peer-left after close = %+v", m)
	}
}

func TestPeerIDsAreRandom(t *testing.T) {
	th := newTestHub(t, Config{RoomCapacity: 40})
	seen := map[string]bool{}
	for range 20 {
		_, w := th.join(t, "ids")
		if seen[w.ID] || len(w.ID) < 16 || seen[w.Resume] || len(w.Resume) < 40 {
			t.Fatalf("id %q / resume token %q repeated or short", w.ID, w.Resume)
		}
		seen[w.ID], seen[w.Resume] = true, true
	}
}

func TestOpenModeNames(t *testing.T) {
	th := newTestHub(t, Config{})
	a := th.dial(t)
	wa, err := a.JoinAs(ctxT(t), "names", "", "Ada")
	if err != nil || wa.Name != "Ada" {
		t.Fatalf("JoinAs = %+v, %v", wa, err)
	}
	b := th.dial(t)
	wb, err := b.JoinAs(ctxT(t), "names", "", "Bob")
	if err != nil {
		t.Fatal(err)
	}
	if wb.Names[wa.ID] != "Ada" {
		t.Fatalf("welcome names = %v", wb.Names)
	}
	if m := expect(t, a, TypePeerJoined); m.Name != "Bob" {
		t.Fatalf("peer-joined = %+v", m)
	}
}

// TestErrors reaches every error that needs no special configuration and
// checks that the connection keeps working after each.
func TestErrors(t *testing.T) {
	th := newTestHub(t, Config{})
	tests := []struct {
		name   string
		joined bool
		send   string
		binary bool
		code   string
	}{
		{"not json", false, `hello`, false, CodeBadMessage},
		{"unknown type", false, `{"type":"nope"}`, false, CodeBadMessage},
		{"binary frame", false, `{"type":"ping"}`, true, CodeBadMessage},
		{"signal before join", false, `{"type":"signal","to":"x","data":{}}`, false, CodeBadMessage},
		{"leave before join", false, `{"type":"leave"}`, false, CodeBadMessage},
		{"bad room", false, `{"type":"join","room":"../etc"}`, false, CodeBadMessage},
		{"resume unknown token", false, `{"type":"resume","token":"nope"}`, false, CodeResumeFailed},
		{"join twice", true, `{"type":"join","room":"errs"}`, false, CodeBadMessage},
		{"resume while joined", true, `{"type":"resume","token":"x"}`, false, CodeBadMessage},
		{"signal data not object", true, `{"type":"signal","to":"x","data":"sdp"}`, false, CodeBadMessage},
		{"signal to unknown peer", true, `{"type":"signal","to":"nobody","data":{}}`, false, CodeUnknownPeer},
		{"signal to peer of another room", true, `{"type":"signal","to":"OTHER","data":{}}`, false, CodeUnknownPeer},
	}
	_, wOther := th.join(t, "elsewhere")
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := th.dial(t)
			room := "errs" + strconv.Itoa(i) // no presence events from other cases
			var peer *Client
			var wPeer ServerMessage
			if tt.joined {
				peer, wPeer = th.join(t, room)
				if _, err := c.Join(ctxT(t), room, ""); err != nil {
					t.Fatal(err)
				}
				expect(t, peer, TypePeerJoined)
			}
			msg := strings.ReplaceAll(tt.send, "OTHER", wOther.ID)
			var err error
			if tt.binary {
				c.writeMu.Lock()
				err = c.ws.WriteMessage(websocket.BinaryMessage, []byte(msg))
				c.writeMu.Unlock()
			} else {
				err = c.SendRaw([]byte(msg))
			}
			if err != nil {
				t.Fatal(err)
			}
			m := expect(t, c, TypeError, tt.code)
			if m.Message == "" {
				t.Error("error without message")
			}
			if tt.code == CodeUnknownPeer && m.Peer == "" {
				t.Error("unknown-peer error does not name the peer")
			}
			alive(t, c)
			if tt.joined {
				// Still in the room: the peer hears from it.
				if err := c.Signal(wPeer.ID, map[string]string{"hi": "there"}); err != nil {
					t.Fatal(err)
				}
				expect(t, peer, TypeSignal)
			}
		})
	}
}

func TestRoomFull(t *testing.T) {
	th := newTestHub(t, Config{RoomCapacity: 2})
	a, _ := th.join(t, "small")
	b, _ := th.join(t, "small")
	expect(t, a, TypePeerJoined)
	c := th.dial(t)
	_, err := c.Join(ctxT(t), "small", "")
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeRoomFull {
		t.Fatalf("third join: %v, want room-full", err)
	}
	alive(t, c)
	// Someone leaves: there is room again.
	b.Close()
	expect(t, a, TypePeerLeft)
	if _, err := c.Join(ctxT(t), "small", ""); err != nil {
		t.Fatalf("join after a leave: %v", err)
	}
}

func TestTooLarge(t *testing.T) {
	th := newTestHub(t, Config{MaxMessageBytes: 1024})
	a, _ := th.join(t, "big")
	_, wb := th.join(t, "big")
	expect(t, a, TypePeerJoined)
	big := fmt.Sprintf(`{"type":"signal","to":"%s","data":{"pad":"%s"}}`, wb.ID, strings.Repeat("x", 2000))
	if err := a.SendRaw([]byte(big)); err != nil {
		t.Fatal(err)
	}
	expect(t, a, TypeError, CodeTooLarge)
	alive(t, a)
	// Far above the limit (4x) the hub closes with 1009.
	if err := a.SendRaw([]byte(strings.Repeat(" ", 5000))); err != nil {
		t.Fatal(err)
	}
	if code := waitClosed(t, a); code != CloseTooBig {
		t.Fatalf("close code %d, want %d", code, CloseTooBig)
	}
}

func TestRateLimit(t *testing.T) {
	// A bucket of 3 that refills once in 30 years: exactly three pass.
	th := newTestHub(t, Config{MessageRate: 1e-9, MessageBurst: 3})
	c := th.dial(t)
	for range 3 {
		alive(t, c)
	}
	if err := c.Send(ClientMessage{Type: TypePing}); err != nil {
		t.Fatal(err)
	}
	expect(t, c, TypeError, CodeRateLimited)
}

func TestAbusiveClientDisconnected(t *testing.T) {
	th := newTestHub(t, Config{ErrorRate: 1e-9, ErrorBurst: 3})
	closed := make(chan string, 4)
	th.onClosed = func(reason string) { closed <- reason }
	c := th.dial(t)
	for i := range 4 {
		if err := c.SendRaw([]byte("junk")); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	for i := range 4 {
		expect(t, c, TypeError, CodeBadMessage)
		_ = i
	}
	if code := waitClosed(t, c); code != ClosePolicy {
		t.Fatalf("close code %d, want %d", code, ClosePolicy)
	}
	select {
	case r := <-closed:
		if r != reasonAbuse {
			t.Fatalf("closed for %q, want %q", r, reasonAbuse)
		}
	case <-ctxT(t).Done():
		t.Fatal("hub never finished the connection")
	}
	if v := th.metric(t, `signal_disconnects_total{reason="abuse"}`); v != "1" {
		t.Fatalf("abuse disconnects = %q", v)
	}
}

func TestConnectionCaps(t *testing.T) {
	th := newTestHub(t, Config{MaxConnsPerIP: 2})
	th.dial(t)
	th.dial(t)
	_, err := Dial(ctxT(t), th.url)
	if !isHTTPStatus(err, http.StatusTooManyRequests) {
		t.Fatalf("third connection from one address: %v, want HTTP 429", err)
	}

	th2 := newTestHub(t, Config{MaxConns: 1})
	th2.dial(t)
	_, err = Dial(ctxT(t), th2.url)
	if !isHTTPStatus(err, http.StatusServiceUnavailable) {
		t.Fatalf("connection over the total cap: %v, want HTTP 503", err)
	}
	if v := th2.metric(t, `signal_rejected_connections_total{reason="max-conns"}`); v != "1" {
		t.Fatalf("rejected max-conns = %q", v)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	th := newTestHub(t, Config{})
	a, _ := th.join(t, "m")
	alive(t, a)
	for _, u := range []string{th.srv.URL + "/healthz", th.admin.URL + "/healthz"} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
			t.Fatalf("GET %s = %d %q", u, resp.StatusCode, body)
		}
	}
	resp, err := http.Get(th.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("public /metrics = %d, want 404", resp.StatusCode)
	}
	for series, want := range map[string]string{
		"signal_connections": "1",
		"signal_peers":       "1",
		"signal_rooms":       "1",
		`signal_messages_received_total{type="join"}`: "1",
		`signal_messages_received_total{type="ping"}`: "1",
		`signal_errors_total{code="room-full"}`:       "0",
	} {
		if got := th.metric(t, series); got != want {
			t.Errorf("%s = %q, want %q", series, got, want)
		}
	}
}
