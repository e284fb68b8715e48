package relay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/rtcsuite/rtcsuite/internal/turnrest"
)

var testSecret = []byte("test-secret")

// newTestServer starts a relay on loopback with one static user
// ("alice"/"wonderland"), testSecret for REST credentials and loopback
// peers allowed; mutate adjusts the config first.
func newTestServer(t *testing.T, mutate func(*Config)) *Server {
	t.Helper()
	cfg := Config{
		Realm: "test.realm",
		Listeners: []Listener{
			{Network: "udp", Addr: "127.0.0.1:0"},
			{Network: "tcp", Addr: "127.0.0.1:0"},
		},
		UDPSockets: 2,
		Users:      []User{{Name: "alice", Key: turnrest.LongTermKey("alice", "test.realm", "wonderland")}},
		Secrets:    [][]byte{testSecret},
		Peers:      PeerPolicy{AllowLoopback: true},
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		// The kernel path has tests of its own (offload_test.go); here
		// user space must see every packet the tests count.
		Offload: OffloadOff,
	}
	if os.Getenv("RELAY_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(&testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if mutate != nil {
		mutate(&cfg)
	}
	if portableMode.Load() {
		cfg.DisableFastPath, cfg.UDPSockets = true, 1
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if portableMode.Load() && (s.fast.enabled || len(s.fast.loops) > 0) {
		t.Fatalf("portable mode: fast path enabled=%v with %d relay loops, want neither", s.fast.enabled, len(s.fast.loops))
	}
	return s
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// pionClient returns a started pion TURN client talking to srv over
// network ("udp", "tcp" or "tls").
func pionClient(t *testing.T, srv *Server, network, user, pass string) *turn.Client {
	t.Helper()
	var conn net.PacketConn
	var addr string
	switch network {
	case "udp":
		addr = srv.Addr("udp").String()
		c, err := net.ListenPacket("udp", localFor(addr))
		if err != nil {
			t.Fatal(err)
		}
		conn = c
	case "tcp":
		addr = srv.Addr("tcp").String()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn = turn.NewSTUNConn(c)
	case "tls":
		addr = srv.Addr("tls").String()
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // self-signed test cert
		if err != nil {
			t.Fatal(err)
		}
		conn = turn.NewSTUNConn(c)
	}
	cl, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: user, Password: pass, Realm: srv.cfg.Realm,
		RTO: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(); conn.Close() })
	return cl
}

func localFor(addr string) string {
	if strings.HasPrefix(addr, "[") {
		return "[::1]:0"
	}
	return "127.0.0.1:0"
}

// selfSigned returns a throwaway certificate for 127.0.0.1.
func selfSigned(t *testing.T) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "turnd test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// rawClient speaks TURN by hand over UDP so tests see exact error codes.
type rawClient struct {
	t      *testing.T
	conn   net.PacketConn
	stream net.Conn // set: speak over this TCP connection instead
	// exchange, when set, replaces the request/answer round trip (tests
	// that read the stream with a goroutine of their own).
	exchange func(*stun.Message) (*stun.Message, error)
	srv      net.Addr
	user     string
	key      []byte
	realm    stun.Realm
	nonce    stun.Nonce
}

func newRawClient(t *testing.T, srv *Server, user, pass string) *rawClient {
	t.Helper()
	c, err := net.ListenPacket("udp", localFor(srv.Addr("udp").String()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, conn: c, srv: srv.Addr("udp"), user: user,
		key: turnrest.LongTermKey(user, srv.cfg.Realm, pass)}
}

// roundTrip sends m and returns the answer with the same transaction ID,
// retransmitting a few times (UDP on loopback can still drop under load).
func (r *rawClient) roundTrip(m *stun.Message) (*stun.Message, error) {
	if r.exchange != nil {
		return r.exchange(m)
	}
	if r.stream != nil {
		return streamRoundTrip(r.stream, m)
	}
	buf := make([]byte, 2048)
	for try := 0; try < 5; try++ {
		if _, err := r.conn.WriteTo(m.Raw, r.srv); err != nil {
			return nil, err
		}
		r.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, _, err := r.conn.ReadFrom(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return nil, err
			}
			resp := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if resp.Decode() != nil || resp.TransactionID != m.TransactionID {
				continue
			}
			return resp, nil
		}
	}
	return nil, errors.New("no answer")
}

// do sends an authenticated request (learning realm and nonce from a 401
// first when needed) and returns the answer.
func (r *rawClient) do(method stun.Method, attrs ...stun.Setter) *stun.Message {
	r.t.Helper()
	for attempt := 0; attempt < 3; attempt++ {
		setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
		setters = append(setters, attrs...)
		if r.nonce != nil {
			setters = append(setters, stun.NewUsername(r.user), r.realm, r.nonce, stun.MessageIntegrity(r.key))
		}
		setters = append(setters, stun.Fingerprint)
		m := stun.MustBuild(setters...)
		resp, err := r.roundTrip(m)
		if err != nil {
			r.t.Fatalf("%v: %v", method, err)
		}
		var code stun.ErrorCodeAttribute
		if resp.Type.Class == stun.ClassErrorResponse && code.GetFrom(resp) == nil &&
			(code.Code == stun.CodeStaleNonce || (code.Code == stun.CodeUnauthorized && r.nonce == nil)) {
			if err := r.nonce.GetFrom(resp); err != nil {
				r.t.Fatalf("401 without nonce: %v", resp)
			}
			if err := r.realm.GetFrom(resp); err != nil {
				r.t.Fatalf("401 without realm: %v", resp)
			}
			continue
		}
		return resp
	}
	r.t.Fatalf("%v: could not authenticate", method)
	return nil
}

// errorCode returns the response's error code, or 0 for a success.
func errorCode(t *testing.T, m *stun.Message) stun.ErrorCode {
	t.Helper()
	if m.Type.Class == stun.ClassSuccessResponse {
		return 0
	}
	var code stun.ErrorCodeAttribute
	if err := code.GetFrom(m); err != nil {
		t.Fatalf("error response without ERROR-CODE: %v", m)
	}
	return code.Code
}

func restCred(secret []byte, user string, ttl time.Duration) turnrest.Credential {
	return turnrest.Mint(secret, user, time.Now().Add(ttl))
}

// testClock is a clock tests move while the server reads it.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock(t time.Time) *testClock { return &testClock{now: t} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newRawStreamClient is a rawClient over a TCP connection to srv.
func newRawStreamClient(t *testing.T, srv *Server, user, pass string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", srv.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, stream: c, srv: srv.Addr("tcp"), user: user,
		key: turnrest.LongTermKey(user, srv.cfg.Realm, pass)}
}

// streamRoundTrip sends m over a TCP connection and returns the STUN
// answer with its transaction ID (skipping other frames).
func streamRoundTrip(c net.Conn, m *stun.Message) (*stun.Message, error) {
	if _, err := c.Write(m.Raw); err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	for {
		resp, err := readStreamSTUN(c)
		if err != nil {
			return nil, err
		}
		if resp.TransactionID == m.TransactionID {
			return resp, nil
		}
	}
}

// readStreamSTUN reads the next frame from a TURN stream and decodes it
// if it is STUN (ChannelData frames are skipped).
func readStreamSTUN(c net.Conn) (*stun.Message, error) {
	for {
		hdr := make([]byte, 4)
		if _, err := io.ReadFull(c, hdr); err != nil {
			return nil, err
		}
		if hdr[0]>>6 == 1 {
			n := int(hdr[2])<<8 | int(hdr[3])
			if _, err := io.ReadFull(c, make([]byte, (n+3)&^3)); err != nil {
				return nil, err
			}
			continue
		}
		rest := make([]byte, 16+(int(hdr[2])<<8|int(hdr[3])))
		if _, err := io.ReadFull(c, rest); err != nil {
			return nil, err
		}
		m := &stun.Message{Raw: append(hdr, rest...)}
		if err := m.Decode(); err != nil {
			return nil, err
		}
		return m, nil
	}
}

// find looks k up as a reader of k's listener would.
func (fp *fastPath) find(k c2pKey) *binding { return fp.lookup(k, fp.listenerID(k.listener)) }
