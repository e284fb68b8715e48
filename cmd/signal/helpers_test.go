package main

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rtcsuite/rtcsuite/signaling"
)

// newServer serves h on loopback and returns its ws:// URL.
func newServer(t *testing.T, h *signaling.Hub) string {
	t.Helper()
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		srv.Close()
	})
	return "ws" + srv.URL[len("http"):] + "/ws"
}
