package relay

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminHandler serves the operator endpoints; mount it on a listener off
// the relay ports (turnd binds it to loopback by default):
//
//	/metrics  Prometheus metrics (no per-user or per-address labels)
//	/healthz  200 while the process serves
//	/readyz   200 while it accepts new allocations, 503 while draining or
//	          while a TCP/TLS listener's Accept keeps failing
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-s.stop:
			http.Error(w, "closed", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ok\n"))
		}
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		if n := s.acceptFailing.Load(); n > 0 {
			http.Error(w, "a TCP/TLS listener cannot accept connections (see the log)", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}
