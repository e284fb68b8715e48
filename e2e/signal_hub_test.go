package e2e

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/turnrest"
	"github.com/rtcsuite/rtcsuite/signaling"
)

// signal_startHub serves a hub whose ICE servers are turnURL with TURN REST
// credentials minted from secret, wired as cmd/signal wires it (the hub
// asks, the command mints). It returns the HTTP server; both stop at test end.
func signal_startHub(t *testing.T, secret []byte, turnURL string) *httptest.Server {
	t.Helper()
	hub, err := signaling.NewHub(signaling.Config{
		ICEServers: func(peerID string) ([]signaling.ICEServer, time.Time) {
			c := turnrest.Mint(secret, peerID, time.Now().Add(time.Hour))
			return []signaling.ICEServer{{URLs: []string{turnURL}, Username: c.Username, Credential: c.Password}}, c.Expires
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hub.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hub.Shutdown(ctx)
		srv.Close()
	})
	return srv
}
