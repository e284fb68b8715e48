package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/turn/v5"
	"github.com/rtcsuite/rtcsuite/internal/conf"
	"github.com/rtcsuite/rtcsuite/internal/turnrest"
	"github.com/rtcsuite/rtcsuite/signaling"
)

// waitFor bounds waits: a safety net, never a performance check.
const waitFor = 30 * time.Second

// syncBuffer is an io.Writer safe for the server's goroutines.
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

type running struct {
	public, admin net.Addr
	stdout        *syncBuffer
	stderr        *syncBuffer
	stop          func() int // cancels and returns the exit code
}

// start runs the command in the background and waits until it serves.
func start(t *testing.T, args []string, env map[string]string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	ready := make(chan struct{})
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, args, runEnv{
			getenv: func(k string) string { return env[k] },
			stdout: r.stdout, stderr: r.stderr,
			ready: func(p, a net.Addr) { r.public, r.admin = p, a; close(ready) },
		})
	}()
	select {
	case <-ready:
	case code := <-exit:
		cancel()
		t.Fatalf("run exited with %d before serving:\n%s", code, r.stderr)
	case <-time.After(waitFor):
		cancel()
		t.Fatal("run never became ready")
	}
	var once sync.Once
	code := -1
	r.stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-exit:
			case <-time.After(waitFor):
				t.Error("run did not return after cancel")
			}
		})
		return code
	}
	t.Cleanup(func() { r.stop() })
	return r
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRunDev(t *testing.T) {
	r := start(t, []string{"-dev", "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0"}, nil)
	base := "http://" + r.public.String()
	if !strings.Contains(r.stdout.String(), "open "+base+"/") {
		t.Fatalf("stdout does not tell which URL to open:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr.String(), "LOOPBACK and PRIVATE peers") {
		t.Fatalf("dev mode does not warn about the relay's peer policy:\n%s", r.stderr)
	}
	for _, u := range []string{base + "/healthz", "http://" + r.admin.String() + "/healthz", "http://" + r.admin.String() + "/metrics"} {
		if code, _ := get(t, http.DefaultClient, u); code != 200 {
			t.Fatalf("GET %s = %d", u, code)
		}
	}
	if code, body := get(t, http.DefaultClient, base+"/"); code != 200 || !strings.Contains(body, "<html") {
		t.Fatalf("GET / = %d, not the web page", code)
	}

	// -dev lets pages from any local dev server in (Vite on
	// localhost:5173), keeps the hub's own page, and tells a foreign page
	// which flag would let it in.
	for _, origin := range []string{"http://localhost:5173", "http://127.0.0.1:8081", "http://[::1]:3000", base} {
		dc, err := signaling.Dial(ctxT(t), base+"/ws", signaling.WithOrigin(origin))
		if err != nil {
			t.Fatalf("-dev refuses origin %s: %v", origin, err)
		}
		dc.Close()
	}
	req, _ := http.NewRequest("GET", base+"/ice", nil)
	req.Header.Set("Origin", "https://elsewhere.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "--allowed-origin https://elsewhere.example") {
		t.Fatalf("foreign origin: %d %q, want 403 naming --allowed-origin", resp.StatusCode, body)
	}

	// A peer gets TURN credentials that the embedded relay accepts.
	c, err := signaling.Dial(ctxT(t), base+"/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := c.Join(ctxT(t), "devroom", "")
	if err != nil {
		t.Fatal(err)
	}
	var turnSrv signaling.ICEServer
	for _, s := range w.ICEServers {
		if s.Username != "" {
			turnSrv = s
		}
	}
	if !strings.HasSuffix(turnSrv.Username, ":"+w.ID) {
		t.Fatalf("welcome iceServers %+v: want a TURN REST credential for %s", w.ICEServers, w.ID)
	}
	var udpURL string
	for _, u := range turnSrv.URLs {
		if strings.HasSuffix(u, "?transport=udp") {
			udpURL = u
		}
	}
	if udpURL == "" {
		t.Fatalf("no UDP TURN URL in %v", turnSrv.URLs)
	}
	hostport := strings.TrimSuffix(strings.TrimPrefix(udpURL, "turn:"), "?transport=udp")
	allocate(t, hostport, turnSrv.Username, turnSrv.Credential)

	if code := r.stop(); code != exitOK {
		t.Fatalf("exit code %d after cancel", code)
	}
	if !strings.Contains(r.stderr.String(), "stopped") {
		t.Fatalf("no orderly stop in the log:\n%s", r.stderr)
	}
}

// allocate makes a TURN allocation with the given credential.
func allocate(t *testing.T, server, user, pass string) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	client, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: pc,
		Username: user, Password: pass, Realm: "rtcsuite",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	relayConn, err := client.Allocate()
	if err != nil {
		t.Fatalf("TURN allocation with the minted credential: %v", err)
	}
	relayConn.Close()
}

func TestRunProduction(t *testing.T) {
	jwtSecret := strings.Repeat("j", 32)
	turnSecret := "turn-shared-secret"
	// Settings from the environment and a config file, as in a deployment.
	file := filepath.Join(t.TempDir(), "signal.conf")
	if err := os.WriteFile(file, []byte("# hub\nturn-url = turn:turn.example.com:3478?transport=udp\nturn-url = stun:stun.example.com\nice-ttl = 10m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, []string{"-listen", "127.0.0.1:0", "-admin-listen", ""}, map[string]string{
		"SIGNAL_JWT_SECRET": jwtSecret, "SIGNAL_TURN_SECRET": turnSecret, "SIGNAL_CONFIG": file,
	})
	if r.admin != nil {
		t.Fatal("admin listener is on although disabled")
	}
	if strings.Contains(r.stderr.String(), jwtSecret) || strings.Contains(r.stderr.String(), turnSecret) {
		t.Fatal("a secret appears in the log")
	}
	base := "http://" + r.public.String()
	if code, _ := get(t, http.DefaultClient, base+"/ice"); code != http.StatusUnauthorized {
		t.Fatalf("GET /ice without token = %d", code)
	}
	tok, err := signaling.MintToken([]byte(jwtSecret), signaling.TokenClaims{Room: "r", Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	code, body := get(t, http.DefaultClient, base+"/ice?token="+tok)
	var ice struct {
		ICEServers []signaling.ICEServer `json:"iceServers"`
		Expires    int64                 `json:"expires"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &ice) != nil || len(ice.ICEServers) != 2 {
		t.Fatalf("GET /ice = %d %s", code, body)
	}
	stun, turnS := ice.ICEServers[0], ice.ICEServers[1]
	if stun.URLs[0] != "stun:stun.example.com" || stun.Username != "" || turnS.URLs[0] != "turn:turn.example.com:3478?transport=udp" {
		t.Fatalf("ice servers = %+v", ice.ICEServers)
	}
	// The credential is what turnd and coturn verify with the shared secret,
	// and it lives for ice-ttl from the file.
	if _, err := turnrest.Check([][]byte{[]byte(turnSecret)}, turnS.Username, turnS.Credential, time.Now()); err != nil {
		t.Fatalf("minted credential does not verify: %v", err)
	}
	exp, _, _ := turnrest.Parse(turnS.Username)
	if d := time.Until(exp); d < 9*time.Minute || d > 11*time.Minute || exp.Unix() != ice.Expires {
		t.Fatalf("credential expires in %v (expires field %d), want the 10m ice-ttl", d, ice.Expires)
	}
	// Joining needs a token.
	c, err := signaling.Dial(ctxT(t), base)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Join(ctxT(t), "r", "")
	var e *signaling.Error
	if !errors.As(err, &e) || e.Code != signaling.CodeUnauthorized {
		t.Fatalf("join without token = %v", err)
	}
	if _, err := c.Join(ctxT(t), "r", tok); err != nil {
		t.Fatal(err)
	}
	if code := r.stop(); code != exitOK {
		t.Fatalf("exit code %d", code)
	}
	if cc := waitClosed(t, c); cc != signaling.CloseServiceRestart {
		t.Fatalf("client closed with %d on shutdown, want 1012", cc)
	}
}

func waitClosed(t *testing.T, c *signaling.Client) int {
	t.Helper()
	select {
	case <-c.Done():
		return c.CloseCode()
	case <-ctxT(t).Done():
		t.Fatal("connection not closed")
	}
	return 0
}

func TestRunDevHTTPS(t *testing.T) {
	r := start(t, []string{"-dev", "-dev-https", "-listen", "127.0.0.1:0", "-admin-listen", ""}, nil)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // the test's own self-signed cert
	if code, _ := get(t, client, "https://"+r.public.String()+"/healthz"); code != 200 {
		t.Fatalf("GET https /healthz = %d", code)
	}
	if !strings.Contains(r.stdout.String(), "https://") {
		t.Fatalf("printed URL is not https:\n%s", r.stdout)
	}
}

func TestRunConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"production needs a jwt secret", []string{"-listen", "127.0.0.1:0"}, nil, []string{"jwt-secret is required"}},
		{"everything at once", []string{
			"-turn-url", "http://x", "-turn-url", "turn:h:99999", "-ice-ttl", "1s", "-jwt-secret", "short",
			"-room-capacity", "0", "-dev-https", "-log-format", "xml", "-max-conns", "0", "-tls-cert", "x.pem",
			"-invite-ttl", "10s",
		}, nil, []string{"invite-ttl 10s",
			`turn-url "http://x"`, `turn-url "turn:h:99999"`, "ice-ttl", "jwt-secret: 5 bytes", "room-capacity 0",
			"need --dev", "log-format", "max-conns", "tls-cert and tls-key",
		}},
		{"turn url without secret", []string{"-allow-open", "-turn-url", "turns:t.example:5349?transport=tcp"}, nil, []string{"need turn-secret"}},
		{"secret without turn url", []string{"-allow-open", "-turn-secret", "s"}, nil, []string{"no turn:/turns: turn-url"}},
		{"dev with external relay", []string{"-dev", "-turn-url", "turn:x:3478", "-turn-secret", "s"}, nil, []string{"-dev runs its own relay"}},
		{"dev on a public address", []string{"-dev", "-listen", "0.0.0.0:8080"}, nil, []string{"-dev-bind-all"}},
		{"bad env value", nil, map[string]string{"SIGNAL_ROOM_CAPACITY": "many", "SIGNAL_ALLOW_OPEN": "1"}, []string{"SIGNAL_ROOM_CAPACITY"}},
		{"missing config file", []string{"-config", "/nonexistent/signal.conf", "-allow-open"}, nil, []string{"config file"}},
		{"unknown flag", []string{"-frobnicate"}, nil, []string{"frobnicate"}},
		{"stray argument", []string{"-allow-open", "extra"}, nil, []string{"unexpected arguments"}},
		{"bad procs", []string{"-allow-open", "-procs", "many"}, nil, []string{`procs "many"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, runEnv{
				getenv: func(k string) string { return tt.env[k] }, stdout: &stdout, stderr: &stderr,
				ready: func(net.Addr, net.Addr) { t.Error("started serving with a bad configuration") },
			})
			if code != exitConfig {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, exitConfig, stderr.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "signal.conf")
	if err := os.WriteFile(file, []byte("room-capacity = 3\nresume-grace = 1m\nallowed-origin = https://a.example\nallowed-origin = https://b.example\nallow-open\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(args []string, env map[string]string) loaded {
		t.Helper()
		var o options
		fs := newFlagSet(&o)
		if _, err := conf.Load(fs, append([]string{"-config", file}, args...), func(k string) string { return env[k] }, envPrefix, "config"); err != nil {
			t.Fatal(err)
		}
		l, err := o.build(io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := load(nil, nil)
	if l.hub.RoomCapacity != 3 || l.hub.ResumeGrace != time.Minute || len(l.hub.AllowedOrigins) != 2 || l.hub.TokenSecret != nil {
		t.Fatalf("file settings not applied: %+v", l.hub)
	}
	l = load(nil, map[string]string{"SIGNAL_ROOM_CAPACITY": "4", "SIGNAL_ALLOWED_ORIGIN": "https://c.example,https://d.example"})
	if l.hub.RoomCapacity != 4 || strings.Join(l.hub.AllowedOrigins, " ") != "https://c.example https://d.example" {
		t.Fatalf("environment does not win over the file: %d %v", l.hub.RoomCapacity, l.hub.AllowedOrigins)
	}
	l = load([]string{"-room-capacity", "5"}, map[string]string{"SIGNAL_ROOM_CAPACITY": "4"})
	if l.hub.RoomCapacity != 5 || l.hub.ResumeGrace != time.Minute {
		t.Fatalf("flag does not win: %d", l.hub.RoomCapacity)
	}
}

func TestTokenCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	secret := strings.Repeat("k", 32)
	code := run(context.Background(), []string{"token", "-room", "lobby", "-name", "Ada", "-ttl", "5m"}, runEnv{
		getenv: func(k string) string { return map[string]string{"SIGNAL_JWT_SECRET": secret}[k] }, stdout: &stdout, stderr: &stderr,
	})
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	// The hub accepts it for that room and shows the name.
	h, err := signaling.NewHub(signaling.Config{TokenSecret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, h)
	c, err := signaling.Dial(ctxT(t), srv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := c.Join(ctxT(t), "lobby", strings.TrimSpace(stdout.String()))
	if err != nil || w.Name != "Ada" {
		t.Fatalf("join with the minted token = %+v, %v", w, err)
	}
	if code := run(context.Background(), []string{"token", "-room", "lobby"}, runEnv{getenv: func(string) string { return "" }, stdout: io.Discard, stderr: io.Discard}); code != exitConfig {
		t.Fatalf("token without secret: exit %d", code)
	}
}

func TestHelp(t *testing.T) {
	var stdout bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, runEnv{getenv: func(string) string { return "" }, stdout: &stdout, stderr: io.Discard}); code != exitOK {
		t.Fatalf("-h exit %d", code)
	}
	for _, f := range []string{"-turn-secret", "-turn-url", "-ice-ttl", "-jwt-secret", "-allowed-origin", "-room-capacity", "-tls-cert", "-dev", "SIGNAL_"} {
		if !strings.Contains(stdout.String(), f) {
			t.Errorf("help does not mention %s", f)
		}
	}
	_ = flag.ErrHelp
}

func TestCheckICEURL(t *testing.T) {
	for _, tt := range []struct {
		url    string
		scheme string
	}{
		{"turn:turn.example.com:3478", "turn"}, {"turn:1.2.3.4?transport=tcp", "turn"}, {"turns:[2001:db8::1]:5349?transport=tcp", "turns"},
		{"stun:stun.example.com", "stun"}, {"stun:127.0.0.1:3478", "stun"},
		{"http://x", ""}, {"turn:", ""}, {"turn:h:0", ""}, {"turn:h:70000", ""}, {"turn:h?transport=sctp", ""},
		{"stun:h?transport=udp", ""}, {"turn:user@h", ""}, {"turn", ""}, {"turn:h/path", ""},
	} {
		got, err := checkICEURL(tt.url)
		if (err == nil) != (tt.scheme != "") || got != tt.scheme && err == nil {
			t.Errorf("checkICEURL(%q) = %q, %v; want scheme %q", tt.url, got, err, tt.scheme)
		}
	}
}

func FuzzCheckICEURL(f *testing.F) {
	for _, s := range []string{"turn:h:3478?transport=udp", "stun:[::1]:1", "turns:x", "turn:%:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		scheme, err := checkICEURL(s)
		if err == nil && !strings.HasPrefix(s, scheme+":") {
			t.Fatalf("checkICEURL(%q) accepted with scheme %q", s, scheme)
		}
	})
}

// A DNS-rebinding page (a name the attacker controls, now resolving to
// 127.0.0.1) must not get /ice credentials for the dev relay, which allows
// loopback and private peers; the page on 127.0.0.1 itself still works.
func TestRunDevRefusesRebinding(t *testing.T) {
	r := start(t, []string{"-dev", "-listen", "127.0.0.1:0", "-admin-listen", ""}, nil)
	_, port, _ := net.SplitHostPort(r.public.String())
	ice := func(host string) int {
		req, _ := http.NewRequest("GET", "http://"+r.public.String()+"/ice", nil)
		req.Host = host
		req.Header.Set("Origin", "http://"+host)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := ice("rebind.attacker.example:" + port); got != http.StatusMisdirectedRequest {
		t.Fatalf("/ice from a rebinding page: HTTP %d, want 421", got)
	}
	for _, h := range []string{"127.0.0.1:" + port, "localhost:" + port} {
		if got := ice(h); got != http.StatusOK {
			t.Fatalf("/ice from the page at %s: HTTP %d, want 200", h, got)
		}
	}
	// The pre-upgrade cap is wired into the public server.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 64 {
		c, err := net.Dial("tcp", r.public.String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	extra, err := net.Dial("tcp", r.public.String())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = extra.SetReadDeadline(time.Now().Add(waitFor)) // safety net only
	if _, err := extra.Read(make([]byte, 1)); err == nil {
		t.Fatal("the 65th idle connection from one address was served")
	}
}

func TestHubLimitFlags(t *testing.T) {
	var o options
	fs := newFlagSet(&o)
	if err := fs.Parse([]string{"-jwt-secret", strings.Repeat("s", 32), "-public-host", "signal.example.com",
		"-send-queue-kib", "8192", "-write-timeout", "5s", "-held-bytes", "1000", "-max-token-ttl", "2h",
		"-ice-rate", "2", "-ice-burst", "4", "-real-ip-header", "X-Forwarded-For"}); err != nil {
		t.Fatal(err)
	}
	l, err := o.build(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	h := l.hub
	if strings.Join(h.AllowedHosts, ",") != "signal.example.com" || h.SendQueueBytes != 8<<20 || h.WriteTimeout != 5*time.Second ||
		h.HeldBytes != 1000 || h.MaxTokenLifetime != 2*time.Hour || h.ICERate != 2 || h.ICEBurst != 4 || h.MaxPendingPerIP != -1 {
		t.Fatalf("flags not applied: %+v", h)
	}
	o = options{}
	fs = newFlagSet(&o)
	if err := fs.Parse([]string{"-dev", "-public-host", "x.example", "-send-queue-kib", "1", "-write-timeout", "1ms"}); err != nil {
		t.Fatal(err)
	}
	_, err = o.build(io.Discard)
	for _, want := range []string{"public-host", "send-queue-kib", "write-timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("build error %v does not mention %s", err, want)
		}
	}
}
