package relay

import (
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/rtcsuite/rtcsuite/internal/turnrest"
)

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func keyFor(srv *Server, user, pass string) []byte {
	return turnrest.LongTermKey(user, srv.cfg.Realm, pass)
}

// metricValue sums every sample of a metric family from /metrics.
func metricValue(t *testing.T, srv *Server, name string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	var sum float64
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}
