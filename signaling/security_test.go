package signaling

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// Tests for issue 8's signal items: each sends the attack bytes and fails
// on the hub before the fix.

func TestInvalidUTF8SignalNeverForwarded(t *testing.T) {
	th := newTestHub(t, Config{})
	a, _ := th.join(t, "utf8")
	b, wb := th.join(t, "utf8")
	expect(t, a, TypePeerJoined)
	for _, attack := range [][]byte{
		[]byte(`{"type":"signal","to":"` + wb.ID + `","data":{"sdp":"v=0 ` + "\xff\xfe" + `"}}`),
		[]byte(`{"type":"signal","to":"` + wb.ID + `","data":{"c":"` + "\xed\xa0\x80" + `"}}`), // a UTF-8 encoded surrogate
		[]byte(`{"type":"signal","to":"` + wb.ID + `","data":{"` + "\xc0\xaf" + `":1}}`),       // overlong
	} {
		if err := a.SendRaw(attack); err != nil {
			t.Fatal(err)
		}
		if m := expect(t, a, TypeError, CodeBadMessage); !strings.Contains(m.Message, "UTF-8") {
			t.Fatalf("error %q does not say why", m.Message)
		}
	}
	// The receiver got none of them: its next message is the valid signal.
	if err := a.Signal(wb.ID, map[string]int{"seq": 7}); err != nil {
		t.Fatal(err)
	}
	if m := next(t, b); seqOf(t, m) != 7 {
		t.Fatalf("b got %+v", m)
	}
	alive(t, a)
}

func TestFailedByBrowserMayResume(t *testing.T) {
	// Chromium and Node ws fail a connection that receives invalid UTF-8
	// with 1007 (or 1002 on a protocol error). The peer did not choose to
	// leave: it may resume.
	for _, code := range []int{websocket.CloseInvalidFramePayloadData, websocket.CloseProtocolError, websocket.CloseInternalServerErr} {
		th := newTestHub(t, Config{ResumeGrace: time.Hour})
		detached := detachEvents(th)
		a, _ := th.join(t, "fail")
		b, wb := th.join(t, "fail")
		expect(t, a, TypePeerJoined)
		b.writeMu.Lock()
		err := b.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(waitFor))
		b.writeMu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		awaitDetach(t, detached, wb.ID)
		b2 := th.dial(t)
		if _, err := b2.Resume(ctxT(t), wb.Resume); err != nil {
			t.Fatalf("close %d: resume: %v", code, err)
		}
	}
}

func TestPingFloodLimited(t *testing.T) {
	clk := newFakeClock() // the buckets never refill
	th := newTestHub(t, Config{MessageBurst: 10, ErrorBurst: 5, now: clk.now})
	a, _ := th.join(t, "calm")
	b, wb := th.join(t, "calm")
	expect(t, a, TypePeerJoined)

	ws, _, err := websocket.DefaultDialer.Dial(th.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var mu sync.Mutex
	pongs := 0
	ws.SetPongHandler(func(string) error { mu.Lock(); pongs++; mu.Unlock(); return nil })
	for range 200 {
		if err := ws.WriteControl(websocket.PingMessage, []byte("flood"), time.Now().Add(waitFor)); err != nil {
			break // the hub closed us
		}
	}
	var ce *websocket.CloseError
	for {
		if _, _, err = ws.ReadMessage(); err != nil {
			break
		}
	}
	if !errors.As(err, &ce) || ce.Code != ClosePolicy {
		t.Fatalf("flooder ended with %v, want close %d", err, ClosePolicy)
	}
	mu.Lock()
	defer mu.Unlock()
	if pongs > 10 {
		t.Fatalf("hub answered %d pings, more than the burst of 10", pongs)
	}
	// The pair next door is untouched.
	if err := a.Signal(wb.ID, map[string]int{"seq": 1}); err != nil {
		t.Fatal(err)
	}
	if m := next(t, b); seqOf(t, m) != 1 {
		t.Fatalf("b got %+v", m)
	}
}

// wsWithHost dials th's WebSocket with the given Host and Origin headers,
// as a DNS-rebinding page would, and returns the HTTP status.
func wsStatus(t *testing.T, th *testHub, host, origin string) int {
	t.Helper()
	h := http.Header{}
	if host != "" {
		h.Set("Host", host)
	}
	if origin != "" {
		h.Set("Origin", origin)
	}
	ws, resp, err := websocket.DefaultDialer.Dial(th.url, h)
	if err == nil {
		ws.Close()
		return http.StatusSwitchingProtocols
	}
	if resp == nil {
		t.Fatalf("dial: %v", err)
	}
	return resp.StatusCode
}

func iceStatus(t *testing.T, th *testHub, host, origin, auth string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", th.srv.URL+"/ice", nil)
	if host != "" {
		req.Host = host
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestDNSRebindingRefused(t *testing.T) {
	// The -dev configuration: loopback names only.
	dev := newTestHub(t, Config{AllowedHosts: []string{"localhost", "127.0.0.1", "::1"}})
	port := dev.srv.Listener.Addr().(*net.TCPAddr).Port
	self := "127.0.0.1:" + itoa64(int64(port))
	rebound := "rebind.attacker.example:" + itoa64(int64(port))
	for _, tc := range []struct {
		name, host, origin string
		want               int
	}{
		{"rebinding page", rebound, "http://" + rebound, http.StatusMisdirectedRequest},
		{"rebinding page, no origin", rebound, "", http.StatusMisdirectedRequest},
		{"same origin", self, "http://" + self, http.StatusSwitchingProtocols},
		{"localhost", "localhost:" + itoa64(int64(port)), "http://localhost:" + itoa64(int64(port)), http.StatusSwitchingProtocols},
		{"same host, other scheme", self, "https://" + self, http.StatusForbidden},
	} {
		if got := wsStatus(t, dev, tc.host, tc.origin); got != tc.want {
			t.Errorf("dev /ws %s: HTTP %d, want %d", tc.name, got, tc.want)
		}
		wantICE := tc.want
		if wantICE == http.StatusSwitchingProtocols {
			wantICE = http.StatusOK
		}
		if got := iceStatus(t, dev, tc.host, tc.origin, ""); got != wantICE {
			t.Errorf("dev /ice %s: HTTP %d, want %d", tc.name, got, wantICE)
		}
	}

	// Without AllowedHosts, same-origin trusts no DNS name it was not told
	// about: the rebinding page's Origin equals its Host.
	open := newTestHub(t, Config{ICEBurst: 100})
	if got := wsStatus(t, open, rebound, "http://"+rebound); got != http.StatusForbidden {
		t.Errorf("unlisted name, same origin: /ws HTTP %d, want 403", got)
	}
	if got := iceStatus(t, open, rebound, "http://"+rebound, ""); got != http.StatusForbidden {
		t.Errorf("unlisted name, same origin: /ice HTTP %d, want 403", got)
	}
	// A listed public name behind a TLS-terminating proxy.
	prod := newTestHub(t, Config{AllowedHosts: []string{"signal.example.com"}})
	if got := iceStatus(t, prod, "signal.example.com", "https://signal.example.com", ""); got != http.StatusOK {
		t.Errorf("listed host behind a proxy: /ice HTTP %d, want 200", got)
	}
	if got := iceStatus(t, prod, "other.example.com", "https://other.example.com", ""); got != http.StatusMisdirectedRequest {
		t.Errorf("unlisted host: /ice HTTP %d, want 421", got)
	}
}

func TestICERateLimited(t *testing.T) {
	clk := newFakeClock()
	// Each request claims its own address: only the per-token bucket can
	// stop one token used from many addresses.
	th := newTestHub(t, Config{TokenSecret: testSecret, ICEBurst: 3, now: clk.now,
		ClientIP: func(r *http.Request) netip.Addr { return netip.MustParseAddr(r.Header.Get("X-Test-IP")) }})
	tok := mustToken(t, testSecret, TokenClaims{Room: "r", Expires: clk.now().Add(time.Hour)})
	status := func(ip, auth string) int {
		req, _ := http.NewRequest("GET", th.srv.URL+"/ice", nil)
		req.Header.Set("X-Test-IP", ip)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 3 {
		if got := status("192.0.2."+itoa64(int64(i+1)), "Bearer "+tok); got != http.StatusOK {
			t.Fatalf("request %d: HTTP %d", i, got)
		}
	}
	if got := status("192.0.2.9", "Bearer "+tok); got != http.StatusTooManyRequests {
		t.Fatalf("fourth request with one token: HTTP %d, want 429", got)
	}
	// One address, many (even invalid) tokens.
	for i := range 3 {
		status("198.51.100.1", "Bearer junk"+itoa64(int64(i)))
	}
	if got := status("198.51.100.1", "Bearer "+tok); got != http.StatusTooManyRequests {
		t.Fatalf("fourth request from one address: HTTP %d, want 429", got)
	}
	clk.advance(time.Minute) // the buckets refill
	if got := status("198.51.100.1", "Bearer "+tok); got != http.StatusOK {
		t.Fatalf("after refill: HTTP %d", got)
	}
}

func TestRefusedOriginLogBounded(t *testing.T) {
	clk := newFakeClock()
	var logBuf syncBuffer
	th := newTestHub(t, Config{AllowedOrigins: []string{"https://app.example"}, now: clk.now,
		Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	huge := "https://" + strings.Repeat("a", 300<<10) + ".example"
	for range 50 {
		if got := wsStatus(t, th, "", huge); got != http.StatusForbidden {
			t.Fatalf("HTTP %d, want 403", got)
		}
	}
	out := logBuf.String()
	lines := strings.Count(out, "refused")
	if lines > 10 || len(out) > 10*1024 {
		t.Fatalf("50 refusals logged %d lines, %d bytes", lines, len(out))
	}
	if lines == 0 {
		t.Fatal("refusals not logged at all")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestPendingConnectionsCappedPerAddress(t *testing.T) {
	h, err := NewHub(Config{MaxPendingPerIP: 3, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h.Handler())
	srv.Config.ConnState = h.ConnState
	srv.Start()
	t.Cleanup(srv.Close)
	var held []net.Conn
	for range 3 { // slowloris: connections that never finish a request
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		held = append(held, c)
	}
	extra, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = extra.SetReadDeadline(time.Now().Add(waitFor)) // safety net only
	if _, err := extra.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("fourth pending connection: read %v, want EOF (closed by the hub)", err)
	}
	// The first ones still get served.
	if _, err := held[0].Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(held[0]), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("held connection: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestDisplayNamesRefuseInvisibleCharacters(t *testing.T) {
	bad := []string{
		"evil\u202egnp.exe", // right-to-left override
		"a\u2066b",          // left-to-right isolate
		"ad\u200bmin",       // zero-width space
		"a\u200db",          // zero-width joiner
		"\ufeffadmin",       // BOM
		"bell\x07",          // control
		"line\u2028break",   // line separator
		"priv\ue000",        // private use
		"bad\xffutf8",
	}
	for _, n := range bad {
		if validName(n) {
			t.Errorf("validName(%q) = true", n)
		}
	}
	for _, n := range []string{"Ada", "Zoë", "李小龍", "عمر", "a b-c_d.e"} {
		if !validName(n) {
			t.Errorf("validName(%q) = false", n)
		}
	}
	th := newTestHub(t, Config{})
	c := th.dial(t)
	if _, err := c.JoinAs(ctxT(t), "names", "", "evil\u202egnp.exe"); err == nil {
		t.Fatal("joined with a bidi override in the name")
	}
}

func TestTokenClaimsStrict(t *testing.T) {
	th := newTestHub(t, Config{TokenSecret: testSecret, MaxTokenLifetime: 2 * time.Hour})
	exp := time.Now().Add(time.Hour).Unix()
	sign := func(c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testSecret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for name, tok := range map[string]string{
		"exp as a string":      sign(jwt.MapClaims{"room": "r", "exp": itoa64(exp)}),
		"beyond max lifetime":  sign(jwt.MapClaims{"room": "r", "exp": time.Now().Add(3 * time.Hour).Unix()}),
		"practically eternal":  sign(jwt.MapClaims{"room": "r", "exp": int64(1) << 40}),
		"exp as a JSON object": sign(jwt.MapClaims{"room": "r", "exp": map[string]int{"n": 1}}),
	} {
		c := th.dial(t)
		var e *Error
		if _, err := c.Join(ctxT(t), "r", tok); !errors.As(err, &e) || e.Code != CodeUnauthorized {
			t.Errorf("%s: join = %v, want unauthorized", name, err)
		}
		if got := iceStatus(t, th, "", "", "Bearer "+tok); got != http.StatusUnauthorized {
			t.Errorf("%s: /ice HTTP %d, want 401", name, got)
		}
	}
	good := sign(jwt.MapClaims{"room": "r", "exp": exp})
	for _, auth := range []string{"bearer " + good, "BEARER " + good, "Bearer  " + good} {
		if got := iceStatus(t, th, "", "", auth); got != http.StatusOK {
			t.Errorf("/ice with %q: HTTP %d, want 200", auth[:8], got)
		}
	}
}

func TestHubCausedRaceCostsNoErrorBudget(t *testing.T) {
	th := newTestHub(t, Config{ErrorRate: 1e-9, ErrorBurst: 2})
	a, _ := th.join(t, "race")
	b, wb := th.join(t, "race")
	expect(t, a, TypePeerJoined)
	b.Close()
	expect(t, a, TypePeerLeft)
	// Signals already on their way when b left: each gets unknown-peer,
	// none costs a's budget.
	for range 5 {
		if err := a.Signal(wb.ID, map[string]int{"seq": 1}); err != nil {
			t.Fatal(err)
		}
		if m := expect(t, a, TypeError, CodeUnknownPeer); m.Peer != wb.ID {
			t.Fatalf("error about %q", m.Peer)
		}
	}
	alive(t, a)
	// A peer id that never existed is the client's own mistake.
	for range 3 {
		if err := a.Signal("never-was-a-peer", map[string]int{"seq": 1}); err != nil {
			break
		}
	}
	if code := waitClosed(t, a); code != ClosePolicy {
		t.Fatalf("close code %d, want %d", code, ClosePolicy)
	}
}

func TestHeldSessionsBoundedAndCounted(t *testing.T) {
	// Per address: two waiting peers of 127.0.0.1 share 290 bytes; a held
	// signal here is 60.
	th := newTestHub(t, Config{ResumeGrace: time.Hour, HeldBytesPerIP: 290})
	detached := detachEvents(th)
	a, _ := th.join(t, "held")
	b1, w1 := th.join(t, "held")
	expect(t, a, TypePeerJoined)
	b2, w2 := th.join(t, "held")
	expect(t, a, TypePeerJoined)
	b1.drop()
	awaitDetach(t, detached, w1.ID)
	b2.drop()
	awaitDetach(t, detached, w2.ID)
	for i := range 4 { // 4 x 60 bytes held for b1
		if err := a.Signal(w1.ID, map[string]int{"seq": i}); err != nil {
			t.Fatal(err)
		}
	}
	alive(t, a)
	if err := a.Signal(w2.ID, map[string]int{"seq": 0}); err != nil { // 60 more: over 290
		t.Fatal(err)
	}
	got := map[string]bool{}
	for range 2 {
		m := next(t, a)
		got[m.Type+"/"+m.Code+"/"+m.ID+m.Peer] = true
	}
	if !got[TypeError+"/"+CodeUnknownPeer+"/"+w2.ID] || !got[TypePeerLeft+"//"+w2.ID] {
		t.Fatalf("a got %v, want b2 removed", got)
	}
	r, err := th.dial(t).Resume(ctxT(t), w1.Resume)
	if err != nil || r.ID != w1.ID {
		t.Fatalf("b1 resume: %v", err)
	}

	// A waiting session keeps its connection's place under the caps.
	th2 := newTestHub(t, Config{ResumeGrace: time.Hour, MaxConnsPerIP: 2})
	detached2 := detachEvents(th2)
	th2.join(t, "caps")
	c, wc := th2.join(t, "caps")
	c.drop()
	awaitDetach(t, detached2, wc.ID)
	if _, err := Dial(ctxT(t), th2.url); !isHTTPStatus(err, http.StatusTooManyRequests) {
		t.Fatalf("connection while a session waits: %v, want HTTP 429", err)
	}
}

func FuzzSignalData(f *testing.F) {
	for _, s := range []string{`{"sdp":"v=0\r\n"}`, `{"candidate":"a=1","sdpMid":"0"}`, "{\"x\":\"\xff\"}", `{"x":"\ud800"}`,
		"{\"\xc0\xaf\":1}", `{}`, `{"a":[1,2,{"b":null}]}`, "{\"x\":\"\xed\xa0\x80\"}", `{"a":1e400,"b":-1E-400}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		frame := append(append([]byte(`{"type":"signal","to":"peer","data":`), data...), '}')
		m, err := DecodeClientMessage(frame)
		if err != nil {
			return
		}
		out := signalFrame("from", m.Data)
		if !utf8.Valid(out) || !json.Valid(out) {
			t.Fatalf("hub would forward an invalid frame %q", out)
		}
		back, err := DecodeServerMessage(out)
		if err != nil || back.Type != TypeSignal || back.From != "from" {
			t.Fatalf("forwarded frame does not decode: %v %+v", err, back)
		}
		// Numbers stay json.Number: valid JSON such as 1e400 does not fit
		// a float64, and the hub forwards it untouched (a browser's
		// JSON.parse reads it as Infinity).
		want, errWant := decodeAny(m.Data)
		got, errGot := decodeAny(back.Data)
		if errWant != nil || errGot != nil {
			t.Fatalf("data not JSON: %v / %v", errWant, errGot)
		}
		wb, _ := json.Marshal(want)
		gb, _ := json.Marshal(got)
		if !bytes.Equal(wb, gb) {
			t.Fatalf("data changed on the way: %s -> %s", wb, gb)
		}
	})
}

// decodeAny decodes one JSON value keeping numbers as json.Number, so any
// valid JSON decodes.
func decodeAny(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}
