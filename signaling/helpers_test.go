package signaling

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// waitFor bounds every wait in these tests. It is a safety net against a
// hung test, never a performance assertion.
const waitFor = 60 * time.Second

type testHub struct {
	*Hub
	srv   *httptest.Server
	admin *httptest.Server
	url   string // ws://127.0.0.1:port/ws
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// newTestHub serves a hub made from cfg; setup, when given, adjusts it
// before the first connection (test hooks).
func newTestHub(t testing.TB, cfg Config, setup ...func(*Hub)) *testHub {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	h, err := NewHub(cfg)
	if err != nil {
		t.Fatalf("NewHub: %v", err)
	}
	for _, f := range setup {
		f(h)
	}
	if windowsMode.Load() {
		h.noSock = true
	}
	srv := httptest.NewServer(h.Handler())
	admin := httptest.NewServer(h.AdminHandler())
	t.Cleanup(func() {
		srv.Close()
		admin.Close()
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return &testHub{Hub: h, srv: srv, admin: admin, url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

func (th *testHub) dial(t testing.TB, opts ...DialOption) *Client {
	t.Helper()
	c, err := Dial(ctxT(t), th.url, opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (th *testHub) join(t testing.TB, room string, opts ...DialOption) (*Client, ServerMessage) {
	t.Helper()
	c := th.dial(t, opts...)
	w, err := c.Join(ctxT(t), room, "")
	if err != nil {
		t.Fatalf("Join(%q): %v", room, err)
	}
	return c, w
}

// next returns the next message, failing the test if the connection ends.
func next(t testing.TB, c *Client) ServerMessage {
	t.Helper()
	m, err := c.Recv(ctxT(t))
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	return m
}

// expect returns the next message and checks its type (and error code).
func expect(t testing.TB, c *Client, typ string, code ...string) ServerMessage {
	t.Helper()
	m := next(t, c)
	if m.Type != typ {
		t.Fatalf("got %+v, want a %s message", m, typ)
	}
	if len(code) > 0 && m.Code != code[0] {
		t.Fatalf("got error %q (%s), want %q", m.Code, m.Message, code[0])
	}
	return m
}

// alive checks that c still gets answers.
func alive(t testing.TB, c *Client) {
	t.Helper()
	if err := c.Send(ClientMessage{Type: TypePing}); err != nil {
		t.Fatalf("ping: %v", err)
	}
	expect(t, c, TypePong)
}

// waitClosed waits for c's connection to end, discarding messages, and
// returns the close code.
func waitClosed(t testing.TB, c *Client) int {
	t.Helper()
	ctx := ctxT(t)
	for {
		select {
		case _, ok := <-c.Messages():
			if !ok {
				return c.CloseCode()
			}
		case <-ctx.Done():
			t.Fatalf("connection still open after %v", waitFor)
		}
	}
}

// metric returns the value of one series from the admin /metrics, as text.
func (th *testHub) metric(t testing.TB, series string) string {
	t.Helper()
	resp, err := http.Get(th.admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

func isHTTPStatus(err error, code int) bool {
	return err != nil && strings.Contains(err.Error(), "(HTTP "+strconv.Itoa(code)+")")
}
