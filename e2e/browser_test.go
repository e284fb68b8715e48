//go:build linux

package e2e

// Browser tests: Debian's Chromium, headless, driven with chromedp against
// an in-process signaling hub serving the web pages and an in-process relay
// on loopback. Every browser gets a fresh profile. States are awaited by
// polling the DOM (bounded); nothing sleeps to synchronise.
//
// Screenshots of each state go to $RTCSUITE_ARTIFACTS/<test> when that is
// set, else to the test's artifact directory (kept with go test -artifacts).

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
	"github.com/rtcsuite/rtcsuite/internal/turnrest"
	"github.com/rtcsuite/rtcsuite/relay"
	"github.com/rtcsuite/rtcsuite/signaling"
	"github.com/rtcsuite/rtcsuite/web"
)

const (
	// browserWait bounds every wait for a page state.
	browserWait = 45 * time.Second
	// browserPollEvery is how often a wait re-evaluates its predicate.
	browserPollEvery = 50 * time.Millisecond
	// browserMDNSFeature hides host addresses behind mDNS names; off, so
	// loopback host candidates are real addresses.
	browserMDNSFeature = "WebRtcHideLocalIpsWithMdns"
)

// browserEnv is one hub (serving the pages) and one relay on loopback.
type browserEnv struct {
	base string // http://127.0.0.1:port
	// hijacked holds the hub's WebSocket connections (hijacked from
	// net/http), so a test can cut them as a network blip would.
	mu       sync.Mutex
	hijacked map[net.Conn]bool
	relay    *relay.Server
	secret   []byte
	udpAddr  string // relay UDP listener host:port
	tcpAddr  string // relay TCP listener host:port
	credTTL  time.Duration
	// minted records every credential expiry the hub was given.
	minted []time.Time
}

type browserEnvConfig struct {
	roomCapacity int
	// credTTL is the lifetime of minted TURN credentials; default 10 min.
	credTTL time.Duration
	// tokenSecret, when set, puts the hub in token mode.
	tokenSecret []byte
}

func browser_startEnv(t testing.TB, cfg browserEnvConfig) *browserEnv {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	secret := make([]byte, 32)
	rand.Read(secret)

	rs, err := relay.New(relay.Config{
		Realm:      "rtcsuite",
		Listeners:  []relay.Listener{{Network: "udp", Addr: "127.0.0.1:0"}, {Network: "tcp", Addr: "127.0.0.1:0"}},
		UDPSockets: 1,
		Secrets:    [][]byte{secret},
		Peers:      relay.PeerPolicy{AllowLoopback: true},
		Logger:     quiet,
	})
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		_ = rs.Run(ctx) // ends with ctx
	}()
	t.Cleanup(func() {
		// Close first: Run would drain the browsers' allocations for
		// DrainTimeout; the browsers are gone by now.
		rs.Close()
		cancel()
		<-relayDone
	})
	env := &browserEnv{
		relay:   rs,
		secret:  secret,
		udpAddr: rs.Addr("udp").String(),
		tcpAddr: rs.Addr("tcp").String(),
		credTTL: cmp.Or(cfg.credTTL, 10*time.Minute),
	}

	hub, err := signaling.NewHub(signaling.Config{
		ICEServers:   env.iceServers,
		RoomCapacity: cfg.roomCapacity,
		TokenSecret:  cfg.tokenSecret,
		// The pages come from 127.0.0.1 and, in TestBrowserInsecureContext,
		// from a name mapped to it: a DNS name counts as same-origin only
		// when the hub is told it serves under it (DNS-rebinding defence).
		AllowedHosts: []string{"127.0.0.1", "localhost", "insecure.test"},
		Logger:       quiet,
	})
	if err != nil {
		t.Fatalf("signaling.NewHub: %v", err)
	}
	mux := http.NewServeMux()
	for _, p := range signaling.Paths {
		mux.Handle(p, hub.Handler())
	}
	mux.Handle("/", web.Handler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	env.hijacked = map[net.Conn]bool{}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateHijacked {
				env.mu.Lock()
				env.hijacked[c] = true
				env.mu.Unlock()
			}
		},
	}
	go func() { _ = srv.Serve(ln) }() // ends with Close
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = hub.Shutdown(sctx)
		srv.Close()
	})
	env.base = "http://" + ln.Addr().String()
	return env
}

// dropWebSockets closes every WebSocket's TCP connection without a close
// frame, as a network blip does, and returns how many it closed.
func (e *browserEnv) dropWebSockets() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for c := range e.hijacked {
		if c.Close() == nil {
			n++
		}
		delete(e.hijacked, c)
	}
	return n
}

// iceServers is the hub's ICEServers hook: STUN plus TURN over UDP and TCP
// with a TURN REST credential minted for the peer, as cmd/signal wires it.
func (e *browserEnv) iceServers(peerID string) ([]signaling.ICEServer, time.Time) {
	c := turnrest.Mint(e.secret, peerID, time.Now().Add(e.credTTL))
	e.mu.Lock()
	e.minted = append(e.minted, c.Expires)
	e.mu.Unlock()
	return []signaling.ICEServer{
		{URLs: []string{"stun:" + e.udpAddr}},
		{
			URLs:       []string{"turn:" + e.udpAddr + "?transport=udp", "turn:" + e.tcpAddr + "?transport=tcp"},
			Username:   c.Username,
			Credential: c.Password,
		},
	}, c.Expires
}

// browser_mergeFeatures returns args with feature added to the value of
// --disable-features, keeping whatever chromedp put there, or with a new
// --disable-features flag when there is none.
func browser_mergeFeatures(args []string, feature string) []string {
	out := slices.Clone(args)
	const flag = "--disable-features="
	for i, a := range out {
		if v, ok := strings.CutPrefix(a, flag); ok {
			list := strings.Split(v, ",")
			if !slices.Contains(list, feature) {
				list = append(slices.DeleteFunc(list, func(s string) bool { return s == "" }), feature)
			}
			out[i] = flag + strings.Join(list, ",")
			return out
		}
	}
	return append(out, flag+feature)
}

// browserPage is one headless Chromium with one tab.
type browserPage struct {
	name string
	ctx  context.Context
	t    testing.TB
	// chromedpFeatures is the --disable-features list chromedp itself
	// passed, before ours was merged in.
	chromedpFeatures []string
}

// browser_open starts a fresh Chromium (its own profile directory) and
// returns its tab. Console output and page errors go to the test log.
// browserLoopbackOnlyJS wraps addIceCandidate and setRemoteDescription so
// only candidates on loopback addresses (and end-of-candidates) reach ICE:
// trickled ones, and those a renegotiation's SDP carries (a=candidate lines
// of everything gathered so far).
const browserLoopbackOnlyJS = `(() => {
  const loopback = (line) => { const addr = line.split(' ')[4] || ''; return addr.startsWith('127.') || addr === '::1'; };
  const orig = RTCPeerConnection.prototype.addIceCandidate;
  RTCPeerConnection.prototype.addIceCandidate = function (c, ...rest) {
    const line = c && (typeof c === 'string' ? c : c.candidate);
    if (line && !loopback(line)) return Promise.resolve();
    return orig.call(this, c, ...rest);
  };
  const origSRD = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = function (d, ...rest) {
    if (d && typeof d.sdp === 'string') {
      const sdp = d.sdp.split('\r\n').filter((l) => !l.startsWith('a=candidate:') || loopback(l)).join('\r\n');
      d = { type: d.type, sdp };
    }
    return origSRD.call(this, d, ...rest);
  };
})();`

func browser_open(t testing.TB, name string, width, height int, extra ...chromedp.ExecAllocatorOption) *browserPage {
	t.Helper()
	exe := testenv.NeedCommand(t, "chromium", "chromium")
	profile := t.TempDir()
	p := &browserPage{name: name, t: t}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(profile),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.WindowSize(width, height),
	)
	opts = append(opts, extra...)
	opts = append(opts,
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			for _, a := range cmd.Args {
				if v, ok := strings.CutPrefix(a, "--disable-features="); ok && v != "" {
					p.chromedpFeatures = strings.Split(v, ",")
				}
			}
			cmd.Args = browser_mergeFeatures(cmd.Args, browserMDNSFeature)
			// What chromedp does when there is no ModifyCmdFunc: the
			// browser dies with the test process.
			if cmd.SysProcAttr == nil {
				cmd.SysProcAttr = &syscall.SysProcAttr{}
			}
			cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
		}),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		acancel()
		t.Fatalf("%s: starting chromium: %v", name, err)
	}
	// Keep WebRTC traffic on loopback: Chromium gathers candidates on every
	// interface of the host, and the tests must only send to 127.0.0.0/8 and
	// ::1. Remote candidates with other addresses are dropped before ICE
	// sees them, so no connectivity check ever targets them.
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		var res page.AddScriptToEvaluateOnNewDocumentResult
		return tg.Call(ctx, page.CommandAddScriptToEvaluateOnNewDocument,
			&page.AddScriptToEvaluateOnNewDocumentParams{Source: browserLoopbackOnlyJS}, &res)
	})); err != nil {
		cancel()
		acancel()
		t.Fatalf("%s: installing the loopback-only candidate filter: %v", name, err)
	}
	var wg sync.WaitGroup
	messages := chromedp.Console(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleDebug {
				continue
			}
			t.Logf("[%s console] %s", name, m)
		}
	}()
	t.Cleanup(func() {
		cancel()
		acancel()
		wg.Wait()
	})
	p.ctx = ctx
	browserPagesMu.Lock()
	v, _ := browserPages.LoadOrStore(t, &[]*browserPage{})
	list := v.(*[]*browserPage)
	*list = append(*list, p)
	browserPagesMu.Unlock()
	t.Cleanup(func() { browserPages.Delete(t) })
	return p
}

func (p *browserPage) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.fail("action", err)
	}
}

// eval evaluates a JavaScript expression and decodes its value into T.
func browser_eval[T any](p *browserPage, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.fail("evaluate "+expr, err)
	}
	return v
}

// browser_wait polls the page until expr is truthy (bounded by
// browserWait) and returns its value.
func browser_wait[T any](p *browserPage, what, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserWait+5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Poll[T](expr,
		chromedp.WithPollingInterval(browserPollEvery), chromedp.WithPollingTimeout(browserWait)))
	if err != nil {
		p.fail("waiting for "+what, err)
	}
	return v
}

// fail saves a screenshot and the page's logs, then fails the test.
func (p *browserPage) fail(what string, err error) {
	p.t.Helper()
	// The diagnostics get their own bound: the failed wait may have used
	// up the page's.
	dctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	if png, e := chromedp.Run(dctx, chromedp.FullScreenshot(100)); e == nil {
		path := filepath.Join(browser_artifactDir(p.t), "failure-"+p.name+".png")
		if os.WriteFile(path, png, 0o644) == nil {
			p.t.Logf("%s: failure screenshot %s", p.name, path)
		}
	}
	if s, e := chromedp.Run(dctx, chromedp.Evaluate[string](browserDiagJS)); e == nil {
		p.t.Logf("%s: page state:\n%s", p.name, s)
	}
	for _, q := range browser_pagesOf(p.t) {
		if q == p {
			continue
		}
		qctx, qcancel := context.WithTimeout(q.ctx, 5*time.Second)
		if s, e := chromedp.Run(qctx, chromedp.Evaluate[string](browserDiagJS)); e == nil {
			p.t.Logf("%s: page state:\n%s", q.name, s)
		}
		qcancel()
	}
	p.t.Fatalf("%s: %s: %v", p.name, what, err)
}

// browserPages lists the open pages of each test, for diagnostics.
var browserPages sync.Map // testing.TB -> *[]*browserPage (guarded by browserPagesMu)
var browserPagesMu sync.Mutex

func browser_pagesOf(t testing.TB) []*browserPage {
	browserPagesMu.Lock()
	defer browserPagesMu.Unlock()
	if v, ok := browserPages.Load(t); ok {
		return slices.Clone(*v.(*[]*browserPage))
	}
	return nil
}

const browserDiagJS = `(() => {
  const q = (s) => [...document.querySelectorAll(s)];
  return [
    'status: ' + (document.getElementById('status')?.textContent ?? document.getElementById('gather-status')?.textContent ?? ''),
    ...q('[data-testid=peer]').map((c) => 'peer ' + JSON.stringify(c.dataset)),
    ...q('#sig-log li, [data-testid=timeline] li, [data-testid=verdict], [data-testid=tester-error]').map((li) => '  ' + li.textContent),
  ].join('\n');
})()`

// browser_shot writes a full-page PNG screenshot artifact and logs its path.
func (p *browserPage) shot(name string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	// Open the collapsible sections so the screenshot shows everything.
	_, _ = chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](`document.querySelectorAll('details').forEach((d) => { d.open = true; })`))
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.fail("screenshot", err)
	}
	path := filepath.Join(browser_artifactDir(p.t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot %s", path)
	return path
}

var browserArtifactDirs sync.Map // test name -> dir

func browser_artifactDir(t testing.TB) string {
	if d, ok := browserArtifactDirs.Load(t.Name()); ok {
		return d.(string)
	}
	var dir string
	if root := os.Getenv("RTCSUITE_ARTIFACTS"); root != "" {
		dir = filepath.Join(root, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	} else if a, ok := t.(interface{ ArtifactDir() string }); ok {
		dir = a.ArtifactDir()
	} else {
		dir = t.TempDir()
	}
	browserArtifactDirs.Store(t.Name(), dir)
	return dir
}

// JavaScript predicates the tests poll.
const (
	browserJSJoined = `document.getElementById('status').dataset.state === 'joined' && document.getElementById('self-id').textContent`
	// browserJSOpenPeer returns the first peer card whose control channel is open, as its dataset.
	browserJSOpenPeer = `(() => { const c = document.querySelector('[data-testid=peer][data-dc=open]'); return c ? {...c.dataset} : null; })()`
)

func browser_jsSelectedPair(want string) string {
	return fmt.Sprintf(`(() => { const c = document.querySelector('[data-testid=peer][data-dc=open]');
  return c && c.dataset.selectedLocal === %[1]q && c.dataset.selectedRemote === %[1]q ? {...c.dataset} : null; })()`, want)
}

func browser_jsChatFrom(from, text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('[data-testid=chat-msg]')].some((m) => m.dataset.from === %q && m.querySelector('.text').textContent === %q)`, from, text)
}

// browser_jsTransfer returns the dataset of the finished transfer in direction dir
// ("in" or "out") of file name, or null while it runs.
func browser_jsTransfer(dir, name string) string {
	return fmt.Sprintf(`(() => { const li = [...document.querySelectorAll('[data-testid=transfer]')].find((l) => l.dataset.direction === %q && l.dataset.name === %q && l.dataset.state !== 'running');
  return li ? {...li.dataset} : null; })()`, dir, name)
}

type browserPeerCard struct {
	PeerID         string `json:"peerId"`
	Dc             string `json:"dc"`
	Conn           string `json:"conn"`
	DcOpenMs       string `json:"dcOpenMs"`
	SelectedLocal  string `json:"selectedLocal"`
	SelectedRemote string `json:"selectedRemote"`
}

type browserTransferItem struct {
	State  string `json:"state"`
	Hash   string `json:"hash"`
	Sha256 string `json:"sha256"`
}

// browser_randomFile writes n random bytes and returns the path and SHA-256.
func browser_randomFile(t testing.TB, name string, n int) (string, string) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return path, hex.EncodeToString(sum[:])
}

// browser_chatAndFile checks chat both ways and a file from a to b with a
// matching hash; it returns nothing and fails the test on any mismatch.
func browser_chatAndFile(t *testing.T, a, b *browserPage, aID, bID string) {
	t.Helper()
	a.do(chromedp.SetValue(chromedp.ID("chat-input"), "hello from a"), chromedp.Click(chromedp.ID("chat-send")))
	browser_wait[bool](b, "chat from a", browser_jsChatFrom(aID, "hello from a"))
	b.do(chromedp.SetValue(chromedp.ID("chat-input"), "and hello from b"), chromedp.Click(chromedp.ID("chat-send")))
	browser_wait[bool](a, "chat from b", browser_jsChatFrom(bID, "and hello from b"))

	// 300 KiB plus an odd tail: many 16 KiB chunks and a short last one.
	path, want := browser_randomFile(t, "payload.bin", 300<<10+123)
	a.do(chromedp.SetUploadFiles(chromedp.ID("file-input"), []string{path}))
	in := browser_wait[browserTransferItem](b, "file arrival", browser_jsTransfer("in", "payload.bin"))
	if in.State != "done" || in.Hash != "match" {
		t.Fatalf("receiver: transfer state %q, hash verdict %q; want done, match", in.State, in.Hash)
	}
	if in.Sha256 != want {
		t.Fatalf("receiver computed SHA-256 %s, the file's is %s", in.Sha256, want)
	}
	out := browser_wait[browserTransferItem](a, "file delivery", browser_jsTransfer("out", "payload.bin"))
	if out.State != "done" || out.Hash != "match" {
		t.Fatalf("sender: transfer state %q, receiver verdict %q; want done, match", out.State, out.Hash)
	}
}

// browser_pair opens two pages in one room (the first via "/", which picks
// a fresh room, the second via its share link plus query) and waits until
// their data channel is open. It returns both pages and their peer ids.
func browser_pair(t *testing.T, env *browserEnv, query string) (a, b *browserPage, aID, bID, link string) {
	t.Helper()
	a = browser_open(t, "a", 1280, 900)
	a.do(chromedp.Navigate(env.base + "/?" + query))
	aID = browser_wait[string](a, "a joined", browserJSJoined)
	link = browser_eval[string](a, `document.getElementById('share-link').value`)
	room := browser_eval[string](a, `new URLSearchParams(location.search).get('room')`)
	if !regexp.MustCompile(`^[a-z0-9]{12}$`).MatchString(room) || link != env.base+"/?room="+room {
		t.Fatalf("fresh room %q, share link %q; want a random 12-character room and %s/?room=<room>", room, link, env.base)
	}
	b = browser_open(t, "b", 1280, 900)
	b.do(chromedp.Navigate(link + "&" + query))
	bID = browser_wait[string](b, "b joined", browserJSJoined)
	bSees := browser_wait[browserPeerCard](b, "b's data channel open", browserJSOpenPeer)
	aSees := browser_wait[browserPeerCard](a, "a's data channel open", browserJSOpenPeer)
	if bSees.PeerID != aID || aSees.PeerID != bID {
		t.Fatalf("a (%s) sees %s, b (%s) sees %s", aID, aSees.PeerID, bID, bSees.PeerID)
	}
	return a, b, aID, bID, link
}

// TestBrowserDirect: two pages meet in a fresh room, open a data channel,
// chat both ways and move a file with a matching hash; a third visitor of
// a room at capacity is told plainly that it is full.
func TestBrowserDirect(t *testing.T) {
	testenv.NeedCommand(t, "chromium", "chromium")
	env := browser_startEnv(t, browserEnvConfig{roomCapacity: 2})
	a, b, aID, bID, link := browser_pair(t, env, "")

	// The live panel names the selected pair's candidate types on both sides.
	for _, p := range []*browserPage{a, b} {
		c := browser_wait[browserPeerCard](p, "selected pair", `(() => { const c = document.querySelector('[data-testid=peer][data-selected-local]'); return c ? {...c.dataset} : null; })()`)
		valid := []string{"host", "srflx", "prflx", "relay"}
		if !slices.Contains(valid, c.SelectedLocal) || !slices.Contains(valid, c.SelectedRemote) {
			t.Errorf("%s: selected pair types %q/%q", p.name, c.SelectedLocal, c.SelectedRemote)
		}
		t.Logf("%s: selected pair %s -> %s", p.name, c.SelectedLocal, c.SelectedRemote)
	}
	browser_chatAndFile(t, a, b, aID, bID)

	// Throughput test and the application-level RTT (ping/pong on the
	// control channel) report figures; their size is the benchmark's job.
	a.do(chromedp.Click(chromedp.CSS(`[data-testid=run-throughput]`)))
	tput := browser_wait[string](a, "throughput result", `(() => { const s = document.querySelector('[data-testid=throughput]').textContent; return /bit\/s|failed/.test(s) ? s : ''; })()`)
	if !strings.Contains(tput, "bit/s") || !strings.Contains(tput, "8.0 MiB") {
		t.Errorf("throughput test: %q", tput)
	}
	t.Logf("throughput a -> b: %s", tput)
	for _, p := range []*browserPage{a, b} {
		rtt := browser_wait[string](p, "app RTT", `(() => { const s = document.querySelector('[data-testid=app-rtt]').textContent; return /\d/.test(s) ? s : ''; })()`)
		t.Logf("%s: app RTT %s", p.name, rtt)
	}
	a.shot("direct-a")
	b.shot("direct-b")

	c := browser_open(t, "c", 800, 900)
	c.do(chromedp.EmulateViewport(390, 844), chromedp.Navigate(link)) // phone-sized
	status := browser_wait[string](c, "room full", `document.getElementById('status').dataset.state === 'full' && document.getElementById('status').textContent`)
	if !strings.Contains(strings.ToLower(status), "room full") {
		t.Errorf("third visitor sees %q, want a plain \"room full\"", status)
	}
	if browser_eval[int](c, `document.querySelectorAll('[data-testid=peer]').length`) != 0 {
		t.Errorf("the visitor of a full room got peer connections")
	}
	c.shot("room-full-phone")
}

// TestBrowserMesh: three pages in one room form a full mesh (every page
// holds an open channel to both others), a chat message reaches everyone,
// and the page works at phone width.
func TestBrowserMesh(t *testing.T) {
	testenv.NeedCommand(t, "chromium", "chromium")
	env := browser_startEnv(t, browserEnvConfig{roomCapacity: 3})
	a, b, aID, bID, link := browser_pair(t, env, "")
	c := browser_open(t, "c", 800, 900)
	c.do(chromedp.EmulateViewport(390, 844), chromedp.Navigate(link))
	cID := browser_wait[string](c, "c joined", browserJSJoined)
	ids := map[*browserPage]string{a: aID, b: bID, c: cID}
	for _, p := range []*browserPage{a, b, c} {
		open := browser_wait[[]string](p, "two open channels", `(() => { const ids = [...document.querySelectorAll('[data-testid=peer][data-dc=open]')].map((c) => c.dataset.peerId); return ids.length === 2 ? ids : null; })()`)
		for q, id := range ids {
			if q != p && !slices.Contains(open, id) {
				t.Errorf("%s has open channels to %v, not to %s", p.name, open, q.name)
			}
		}
	}
	c.do(chromedp.SetValue(chromedp.ID("chat-input"), "hello mesh"), chromedp.Click(chromedp.ID("chat-send")))
	for _, p := range []*browserPage{a, b} {
		browser_wait[bool](p, "chat from c", browser_jsChatFrom(cID, "hello mesh"))
	}
	if w := browser_eval[int](c, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("page is %d px wide at a 390 px viewport: it scrolls sideways", w)
	}
	c.shot("mesh-phone")
}

// TestBrowserRelayOnly: with iceTransportPolicy "relay" both pages select a
// relay/relay pair through the in-process relay, which saw the allocations.
func TestBrowserRelayOnly(t *testing.T) {
	testenv.NeedCommand(t, "chromium", "chromium")
	env := browser_startEnv(t, browserEnvConfig{roomCapacity: 4})
	before := env.relay.Stats().TotalAllocations
	a, b, aID, bID, _ := browser_pair(t, env, "relay=1")
	for _, p := range []*browserPage{a, b} {
		if !browser_eval[bool](p, `document.getElementById('relay-only').checked`) {
			t.Fatalf("%s: relay-only switch is off", p.name)
		}
		browser_wait[browserPeerCard](p, "relay/relay selected pair", browser_jsSelectedPair("relay"))
	}
	st := env.relay.Stats()
	if st.TotalAllocations-before < 2 || st.ActiveAllocations < 2 {
		t.Fatalf("relay stats %+v: want at least one allocation per browser", st)
	}
	t.Logf("relay stats: %+v", st)
	browser_chatAndFile(t, a, b, aID, bID)
	a.shot("relay-a")
	b.shot("relay-b")

	// The Restart ICE button on both pages at once: both send offers
	// (glare), perfect negotiation settles it, both gather anew through
	// the relay and the data channel survives.
	cands := map[*browserPage]int{}
	for _, p := range []*browserPage{a, b} {
		cands[p] = browser_eval[int](p, `Number(document.querySelector('[data-testid=peer]').dataset.localCandidates)`)
	}
	var wg sync.WaitGroup
	for _, p := range []*browserPage{a, b} {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(p.ctx, browserWait)
			defer cancel()
			if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`[data-testid=restart-ice]`))); err != nil {
				t.Errorf("%s: clicking Restart ICE: %v", p.name, err)
			}
		})
	}
	wg.Wait()
	for _, p := range []*browserPage{a, b} {
		browser_wait[bool](p, "connected again after the restart", fmt.Sprintf(`(() => { const c = document.querySelector('[data-testid=peer]');
  return c.dataset.restarts === '1' && Number(c.dataset.localCandidates) > %d && ['connected', 'completed'].includes(c.dataset.ice) && c.dataset.dc === 'open' && c.dataset.selectedLocal === 'relay'; })()`, cands[p]))
		glare := browser_eval[string](p, `[...document.querySelectorAll('[data-testid=timeline] li')].map((li) => li.textContent).filter((s) => /glare|colliding/.test(s)).join('; ')`)
		t.Logf("%s after the double restart: %s", p.name, cmp.Or(glare, "no offer collision this time"))
	}
	a.do(chromedp.SetValue(chromedp.ID("chat-input"), "still here after the restart"), chromedp.Click(chromedp.ID("chat-send")))
	browser_wait[bool](b, "chat after the restart", browser_jsChatFrom(aID, "still here after the restart"))
	a.shot("relay-a-after-restart")
}

// TestBrowserFreshCredentials: TURN credentials that expire while a
// relayed call runs. The hub sends fresh ones before the expiry; once the
// first ones have expired (the relay then refuses them for new
// allocations), an ICE restart allocates anew with the fresh ones and the
// call goes on through the relay.
func TestBrowserFreshCredentials(t *testing.T) {
	testenv.NeedCommand(t, "chromium", "chromium")
	// Short enough to wait out, long enough for the first connection.
	const ttl = 10 * time.Second
	env := browser_startEnv(t, browserEnvConfig{roomCapacity: 2, credTTL: ttl})
	a, b, aID, _, _ := browser_pair(t, env, "relay=1")
	env.mu.Lock()
	firstExpiry := slices.MaxFunc(env.minted, time.Time.Compare)
	env.mu.Unlock()
	for _, p := range []*browserPage{a, b} {
		browser_wait[browserPeerCard](p, "relay/relay selected pair", browser_jsSelectedPair("relay"))
	}
	allocs := env.relay.Stats().TotalAllocations
	cands := browser_eval[int](a, `Number(document.querySelector('[data-testid=peer]').dataset.localCandidates)`)
	for _, p := range []*browserPage{a, b} {
		browser_wait[bool](p, "fresh ICE servers from the hub", `[...document.querySelectorAll('#sig-log li')].some((li) => li.textContent.includes('fresh ICE servers'))`)
		// Wait out the first credentials (bounded by browserWait > ttl).
		browser_wait[bool](p, "first credentials expired", fmt.Sprintf(`Date.now() > %d`, firstExpiry.Add(time.Second).UnixMilli()))
	}
	a.do(chromedp.Click(chromedp.CSS(`[data-testid=restart-ice]`)))
	browser_wait[bool](a, "relayed again after the restart", fmt.Sprintf(`(() => { const c = document.querySelector('[data-testid=peer]');
  return c.dataset.restarts === '1' && Number(c.dataset.localCandidates) > %d && ['connected', 'completed'].includes(c.dataset.ice) && c.dataset.selectedLocal === 'relay' && c.dataset.selectedRemote === 'relay'; })()`, cands))
	if got := env.relay.Stats().TotalAllocations; got < allocs+2 {
		t.Errorf("relay allocations %d after the restart, were %d: want new ones from both browsers", got, allocs)
	}
	a.do(chromedp.SetValue(chromedp.ID("chat-input"), "fresh credentials"), chromedp.Click(chromedp.ID("chat-send")))
	browser_wait[bool](b, "chat after the restart", browser_jsChatFrom(aID, "fresh credentials"))
	a.shot("fresh-credentials-a")
}

// TestBrowserResume: the signaling connections break without a close
// frame (a network blip); both pages reconnect with their resume tokens,
// keep their ids, the room sees no leave, and an ICE restart signalled
// across the gap still completes.
func TestBrowserResume(t *testing.T) {
	testenv.NeedCommand(t, "chromium", "chromium")
	env := browser_startEnv(t, browserEnvConfig{roomCapacity: 2})
	a, b, aID, bID, _ := browser_pair(t, env, "")
	candsBefore := browser_eval[int](a, `Number(document.querySelector('[data-testid=peer]').dataset.localCandidates)`)

	if n := env.dropWebSockets(); n != 2 {
		t.Fatalf("dropped %d WebSocket connections, want 2", n)
	}
	// Restart ICE at once: the offer waits in the page's queue (or goes
	// out on the resumed socket) and must reach b.
	a.do(chromedp.Click(chromedp.CSS(`[data-testid=restart-ice]`)))
	for _, p := range []struct {
		page *browserPage
		id   string
	}{{a, aID}, {b, bID}} {
		browser_wait[bool](p.page, "resumed", fmt.Sprintf(`document.getElementById('status').dataset.state === 'joined' &&
  [...document.querySelectorAll('#sig-log li')].some((li) => li.textContent.includes('resumed as ' + %q))`, p.id))
		if got := browser_eval[string](p.page, `document.getElementById('self-id').textContent`); got != p.id {
			t.Errorf("%s: id %q after resume, want %q", p.page.name, got, p.id)
		}
		if left := browser_eval[bool](p.page, `[...document.querySelectorAll('#sig-log li')].some((li) => li.textContent.includes('peer-left'))`); left {
			t.Errorf("%s: saw a peer-left during the blip", p.page.name)
		}
	}
	browser_wait[bool](a, "ICE restart across the blip", fmt.Sprintf(`(() => { const c = document.querySelector('[data-testid=peer]');
  return c.dataset.restarts === '1' && Number(c.dataset.localCandidates) > %d && ['connected', 'completed'].includes(c.dataset.ice) && c.dataset.dc === 'open'; })()`, candsBefore))
	b.do(chromedp.SetValue(chromedp.ID("chat-input"), "after the blip"), chromedp.Click(chromedp.ID("chat-send")))
	browser_wait[bool](a, "chat after the blip", browser_jsChatFrom(bID, "after the blip"))
	a.shot("resumed-a")
}

// TestBrowserInsecureContext: a page served over plain HTTP from a host
// that is not localhost is no secure context. It says so plainly, the
// Copy button explains itself, and files still arrive, marked "not
// verified" instead of checked.
func TestBrowserInsecureContext(t *testing.T) {
	testenv.NeedCommand(t, "chromium", "chromium")
	env := browser_startEnv(t, browserEnvConfig{roomCapacity: 2})
	port := env.base[strings.LastIndex(env.base, ":")+1:]
	// insecure.test resolves to loopback inside this browser only.
	a := browser_open(t, "insecure", 1280, 900, chromedp.Flag("host-resolver-rules", "MAP insecure.test 127.0.0.1"))
	a.do(chromedp.Navigate("http://insecure.test:" + port + "/"))
	browser_wait[string](a, "joined", browserJSJoined)
	if browser_eval[bool](a, `window.isSecureContext`) {
		t.Fatal("http://insecure.test is a secure context; the test proves nothing")
	}
	note := browser_eval[string](a, `(() => { const n = document.getElementById('secure-note'); return n.hidden ? '' : n.textContent; })()`)
	if !strings.Contains(note, "not a secure context") || !strings.Contains(note, "SHA-256") {
		t.Errorf("secure-context note %q", note)
	}
	// The camera needs a secure context: the page says so instead of
	// failing silently on a click.
	call := browser_eval[map[string]any](a, `({disabled: document.getElementById('call-start').disabled,
  note: document.getElementById('call-note').hidden ? '' : document.getElementById('call-note').textContent})`)
	if call["disabled"] != true || !strings.Contains(call["note"].(string), "secure context") || !strings.Contains(call["note"].(string), "-dev-https") {
		t.Errorf("call controls on an insecure page: %v, want a disabled start button and a note naming the secure context and -dev-https", call)
	}
	a.do(chromedp.Click(chromedp.ID("copy-link")))
	copyNote := browser_wait[string](a, "copy note", `document.getElementById('copy-note').textContent`)
	if !strings.Contains(copyNote, "secure context") {
		t.Errorf("copy note %q: want it to say a secure context is needed", copyNote)
	}
	room := browser_eval[string](a, `new URLSearchParams(location.search).get('room')`)

	b := browser_open(t, "secure", 1280, 900)
	b.do(chromedp.Navigate(env.base + "/?room=" + room))
	browser_wait[string](b, "joined", browserJSJoined)
	browser_wait[browserPeerCard](b, "data channel open", browserJSOpenPeer)
	browser_wait[browserPeerCard](a, "data channel open", browserJSOpenPeer)

	path, _ := browser_randomFile(t, "unhashed.bin", 40<<10)
	a.do(chromedp.SetUploadFiles(chromedp.ID("file-input"), []string{path}))
	in := browser_wait[browserTransferItem](b, "file arrival", browser_jsTransfer("in", "unhashed.bin"))
	if in.State != "done" || in.Hash != "unverified" {
		t.Errorf("receiver: state %q, verdict %q; want done, unverified", in.State, in.Hash)
	}
	text := browser_eval[string](b, `document.querySelector('[data-testid=transfer]').textContent`)
	if !strings.Contains(text, "not verified") {
		t.Errorf("receiver shows %q: want it to say plainly the file is not verified", text)
	}
	a.shot("insecure-sender")
	b.shot("insecure-receiver")
}

// TestBrowserTURNTester drives the TURN tester page: URLs other than
// stun:, turn: and turns: are refused, the hub's credentials give a relay
// candidate, a wrong password gives an authentication failure, a TCP or
// TLS relay where nothing listens is unreachable, a UDP relay that never
// answers (a black-holed port) counts down to "no answer after 5 s" while a
// TCP relay that accepts and stays silent is unreachable after the same 5 s,
// and each run shows only its own verdicts.
func TestBrowserTURNTester(t *testing.T) {
	testenv.NeedCommand(t, "chromium", "chromium")
	env := browser_startEnv(t, browserEnvConfig{roomCapacity: 4})
	p := browser_open(t, "tester", 1280, 900)
	p.do(chromedp.Navigate(env.base + "/turn"))

	type verdict struct {
		URL     string `json:"url"`
		Verdict string `json:"verdict"`
		Text    string `json:"text"`
	}
	gather := func(what string) []verdict {
		t.Helper()
		p.do(chromedp.Click(chromedp.ID("gather")))
		browser_wait[bool](p, what+" gathering done", `document.getElementById('gather-status').dataset.state === 'done'`)
		return browser_eval[[]verdict](p, `[...document.querySelectorAll('[data-testid=verdict]')].map((li) => ({url: li.dataset.url, verdict: li.dataset.verdict, text: li.textContent}))`)
	}
	find := func(vs []verdict, url string) verdict {
		for _, v := range vs {
			if v.URL == url {
				return v
			}
		}
		t.Fatalf("no verdict for %s in %+v", url, vs)
		return verdict{}
	}
	addServer := func(url, user, pass string) {
		p.do(
			chromedp.Click(chromedp.ID("clear-servers")),
			chromedp.SetValue(chromedp.ID("url"), url),
			chromedp.SetValue(chromedp.ID("username"), user),
			chromedp.SetValue(chromedp.ID("credential"), pass),
			chromedp.Click(chromedp.ID("add-server")),
		)
		browser_wait[bool](p, "server listed", fmt.Sprintf(`document.querySelectorAll('[data-testid=server]').length === 1 && document.getElementById('server-list').textContent.includes(%q)`, strings.Fields(url)[0]))
		// A changed server list clears the previous run's verdicts.
		if n := browser_eval[int](p, `document.querySelectorAll('[data-testid=verdict]').length`); n != 0 {
			t.Errorf("%d old verdicts still shown after the server list changed", n)
		}
	}
	onlyVerdictsFor := func(vs []verdict, urls ...string) {
		t.Helper()
		var got []string
		for _, v := range vs {
			got = append(got, v.URL)
		}
		if !slices.Equal(got, urls) {
			t.Errorf("verdicts for %v, want exactly %v", got, urls)
		}
	}

	t.Run("other schemes refused", func(t *testing.T) {
		for _, bad := range []string{"http://" + env.udpAddr, "stuns:" + env.udpAddr, "turn:" + env.udpAddr + "?transport=sctp", "relay.example.com"} {
			p.do(chromedp.Click(chromedp.ID("clear-servers")), chromedp.SetValue(chromedp.ID("url"), bad), chromedp.Click(chromedp.ID("add-server")))
			got := browser_wait[string](p, "refusal", `document.getElementById('form-note').dataset.state === 'rejected' && document.getElementById('form-note').textContent`)
			if !strings.Contains(got, "Not added") || !strings.Contains(got, bad) {
				t.Errorf("%s: note %q, want it refused by name", bad, got)
			}
			if n := browser_eval[int](p, `document.querySelectorAll('[data-testid=server]').length`); n != 0 {
				t.Errorf("%s: %d servers listed, want none", bad, n)
			}
			p.do(chromedp.Evaluate[chromedp.Void](`document.getElementById('url').value = ''; delete document.getElementById('form-note').dataset.state`))
		}
	})

	t.Run("good credentials from /ice", func(t *testing.T) {
		p.do(chromedp.Click(chromedp.ID("fetch-ice")))
		browser_wait[bool](p, "servers from /ice", `document.querySelectorAll('[data-testid=server]').length === 2`)
		// The secret is never on the page; its expiry is.
		listed := browser_eval[string](p, `document.getElementById('server-list').textContent`)
		if !strings.Contains(listed, "expires") || strings.Contains(listed, "credential\":") {
			t.Errorf("server list %q: want the credential's expiry and no secret", listed)
		}
		if text := browser_eval[string](p, `document.body.innerText`); regexp.MustCompile(`[A-Za-z0-9+/]{27}=`).MatchString(text) {
			t.Errorf("page text contains something shaped like a TURN REST password")
		}
		vs := gather("good")
		for _, url := range []string{"turn:" + env.udpAddr + "?transport=udp", "turn:" + env.tcpAddr + "?transport=tcp"} {
			if v := find(vs, url); v.Verdict != "works" {
				t.Errorf("%s: verdict %q (%s), want works", url, v.Verdict, v.Text)
			}
		}
		n := browser_eval[int](p, `document.querySelectorAll('[data-testid=tester-candidate][data-type=relay]').length`)
		if n < 1 {
			t.Errorf("no relay candidate listed")
		}
		p.shot("tester-good")
	})

	t.Run("wrong password", func(t *testing.T) {
		url := "turn:" + env.udpAddr + "?transport=udp"
		c := turnrest.Mint(env.secret, "tester", time.Now().Add(10*time.Minute))
		addServer(url, c.Username, "not-the-password")
		vs := gather("bad")
		onlyVerdictsFor(vs, url)
		v := find(vs, url)
		if v.Verdict != "auth-failed" {
			t.Errorf("verdict %q (%s), want auth-failed", v.Verdict, v.Text)
		}
		if browser_eval[bool](p, `document.body.innerText.includes('not-the-password')`) {
			t.Errorf("the page shows the credential it was given")
		}
		codes := browser_eval[[]string](p, `[...document.querySelectorAll('[data-testid=tester-error]')].map((r) => r.dataset.code)`)
		if !slices.Contains(codes, "401") {
			t.Errorf("icecandidateerror codes %v, want a 401", codes)
		}
		if n := browser_eval[int](p, `document.querySelectorAll('[data-testid=tester-candidate][data-type=relay]').length`); n != 0 {
			t.Errorf("%d relay candidates with a wrong password", n)
		}
		p.shot("tester-auth-failed")
	})

	t.Run("nothing listening over TCP and TLS", func(t *testing.T) {
		// A TCP port that was free a moment ago: the connection is refused.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := ln.Addr().String()
		ln.Close()
		tcpURL, tlsURL := "turn:"+dead+"?transport=tcp", "turns:"+dead+"?transport=tcp"
		c := turnrest.Mint(env.secret, "tester", time.Now().Add(10*time.Minute))
		addServer(tcpURL+" "+tlsURL, c.Username, c.Password)
		vs := gather("unreachable")
		onlyVerdictsFor(vs, tcpURL, tlsURL)
		if browser_eval[bool](p, fmt.Sprintf(`document.body.innerText.includes(%q)`, c.Password)) {
			t.Errorf("the page shows the credential it was given")
		}
		for _, url := range []string{tcpURL, tlsURL} {
			if v := find(vs, url); v.Verdict != "unreachable" {
				t.Errorf("%s: verdict %q (%s), want unreachable", url, v.Verdict, v.Text)
			}
		}
		p.shot("tester-unreachable")
	})

	t.Run("black holes", func(t *testing.T) {
		// A bound UDP socket that never answers: the Allocate requests
		// arrive and vanish, as behind a firewall dropping the replies.
		hole, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer hole.Close()
		// A TCP listener that completes handshakes (the kernel's backlog)
		// and never says a word.
		silent, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
		url := "turn:" + hole.LocalAddr().String() + "?transport=udp"
		tcpURL := "turn:" + silent.Addr().String() + "?transport=tcp"
		c := turnrest.Mint(env.secret, "tester", time.Now().Add(10*time.Minute))
		addServer(url+" "+tcpURL, c.Username, c.Password)
		p.do(chromedp.Click(chromedp.ID("gather")))
		// A live countdown: the pending verdict's seconds left go down.
		first := browser_wait[int](p, "countdown", `(() => { const v = document.querySelector('[data-testid=verdict][data-verdict=pending]'); return v && /s left/.test(v.textContent) ? Number(v.dataset.left) : 0; })()`)
		p.shot("tester-countdown")
		browser_wait[bool](p, "countdown going down", fmt.Sprintf(`(() => { const v = document.querySelector('[data-testid=verdict]');
  return v && (v.dataset.verdict !== 'pending' || Number(v.dataset.left) < %d); })()`, first))
		browser_wait[bool](p, "black hole run done", `document.getElementById('gather-status').dataset.state === 'done'`)
		vs := browser_eval[[]verdict](p, `[...document.querySelectorAll('[data-testid=verdict]')].map((li) => ({url: li.dataset.url, verdict: li.dataset.verdict, text: li.textContent}))`)
		onlyVerdictsFor(vs, url, tcpURL)
		if v := find(vs, url); v.Verdict != "no-answer" || !strings.Contains(v.Text, "no answer after 5 s") {
			t.Errorf("verdict %q (%s), want no-answer, \"no answer after 5 s\"", v.Verdict, v.Text)
		}
		if v := find(vs, tcpURL); v.Verdict != "unreachable" || !strings.Contains(v.Text, "after 5 s over TCP") {
			t.Errorf("silent TCP relay: verdict %q (%s), want unreachable after 5 s over TCP", v.Verdict, v.Text)
		}
		p.shot("tester-no-answer")
	})
}

// TestBrowserModules runs the pages' pure helpers (verdict and parsing
// logic) inside Chromium against tables.
func TestBrowserModules(t *testing.T) {
	testenv.NeedCommand(t, "chromium", "chromium")
	env := browser_startEnv(t, browserEnvConfig{roomCapacity: 2})
	p := browser_open(t, "modules", 800, 600)
	p.do(chromedp.Navigate(env.base + "/turn"))

	type cand struct {
		Type, Protocol, Address, RelayProtocol, TcpType string
		Port                                            int
	}
	candTests := []struct {
		line string
		want *cand
	}{
		{"candidate:1 1 udp 2122260223 127.0.0.1 54321 typ host generation 0", &cand{Type: "host", Protocol: "udp", Address: "127.0.0.1", Port: 54321}},
		{"a=candidate:2 1 TCP 1518280447 ::1 9 typ host tcptype active", &cand{Type: "host", Protocol: "tcp", Address: "::1", Port: 9, TcpType: "active"}},
		{"candidate:3 1 udp 41885439 198.51.100.7 3478 typ relay raddr 0.0.0.0 rport 0", &cand{Type: "relay", Protocol: "udp", Address: "198.51.100.7", Port: 3478}},
		{"candidate:4 1 udp 1 host.local 1 typ", nil},
		{"candidate:5 1 udp 1 127.0.0.1 70000 typ host", nil},
		{"", nil},
	}
	for _, tt := range candTests {
		got := browser_eval[*cand](p, fmt.Sprintf(`import('/assets/util.js').then((m) => { const c = m.parseCandidate(%q); return c && {Type: c.type, Protocol: c.protocol, Address: c.address, Port: c.port, RelayProtocol: c.relayProtocol, TcpType: c.tcpType}; })`, tt.line))
		if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
			t.Errorf("parseCandidate(%q) = %+v, want %+v", tt.line, got, tt.want)
		}
	}

	restTests := []struct {
		username string
		expiry   int64 // unix seconds, -1: not a REST username
	}{
		{"1795278112:peer", 1795278112},
		{"1795278112", 1795278112},
		{"1795278112:a:b", 1795278112},
		{"alice", -1},
		{":x", -1},
		{"", -1},
	}
	for _, tt := range restTests {
		got := browser_eval[int64](p, fmt.Sprintf(`import('/assets/util.js').then((m) => { const r = m.parseRestUsername(%q); return r ? r.expiry.getTime() / 1000 : -1; })`, tt.username))
		if got != tt.expiry {
			t.Errorf("parseRestUsername(%q) expiry %d, want %d", tt.username, got, tt.expiry)
		}
	}

	const turnURL = "turn:192.0.2.1:3478?transport=udp"
	judgeTests := []struct {
		name   string
		cands  string // JS array
		errors string // JS array
		state  string // JS object
		want   string
	}{
		{"relay from the server", `[{type: 'relay', url: 'turn:192.0.2.1:3478?transport=udp', address: '192.0.2.1', port: 50000, t: 80}]`, `[]`, `{finished: true}`, "works"},
		{"relay from another server", `[{type: 'relay', url: 'turn:192.0.2.9:3478?transport=udp', address: '192.0.2.9', port: 50000, t: 80}]`, `[]`, `{finished: true}`, "no-candidates"},
		{"401", `[]`, `[{url: 'turn:192.0.2.1:3478?transport=udp', errorCode: 401, errorText: 'Unauthorized'}]`, `{finished: true}`, "auth-failed"},
		{"701 via the stun: url Chrome reports", `[]`, `[{url: 'stun:192.0.2.1:3478', errorCode: 701, errorText: 'STUN binding request timed out.'}]`, `{finished: true}`, "unreachable"},
		{"701 still gathering", `[]`, `[{url: 'stun:192.0.2.1:3478', errorCode: 701}]`, `{finished: false}`, "pending"},
		{"quota", `[]`, `[{url: 'turn:192.0.2.1:3478', errorCode: 486, errorText: 'Allocation Quota Reached'}]`, `{finished: true}`, "error"},
		{"timed out", `[]`, `[]`, `{finished: true, timedOut: true, timeoutMs: 45000}`, "unreachable"},
		{"nothing at all over UDP", `[]`, `[]`, `{finished: true}`, "no-candidates"},
		{"UDP, still within 5 s", `[]`, `[]`, `{finished: false, elapsedMs: 1200}`, "pending"},
		{"UDP, 5 s without an answer", `[]`, `[]`, `{finished: false, elapsedMs: 5000}`, "no-answer"},
		{"UDP, 701 before the deadline", `[]`, `[{url: 'stun:192.0.2.1:3478', errorCode: 701}]`, `{finished: false, elapsedMs: 5000}`, "no-answer"},
		{"relay just before the deadline", `[{type: 'relay', url: 'turn:192.0.2.1:3478?transport=udp', address: '192.0.2.1', port: 50000, t: 4900}]`, `[]`, `{finished: false, elapsedMs: 5000}`, "works"},
	}
	for _, tt := range judgeTests {
		got := browser_eval[string](p, fmt.Sprintf(`import('/assets/verdict.js').then((m) => m.judge([%q], %s, %s, %s)[0].verdict)`, turnURL, tt.cands, tt.errors, tt.state))
		if got != tt.want {
			t.Errorf("judge %s: %q, want %q", tt.name, got, tt.want)
		}
	}
	tcp := browser_eval[string](p, `import('/assets/verdict.js').then((m) => m.judge(['turn:192.0.2.1:3478?transport=tcp'], [], [], {finished: true})[0].verdict)`)
	if tcp != "unreachable" {
		t.Errorf("judge TCP without result: %q, want unreachable", tcp)
	}
	for _, u := range []string{"turn:192.0.2.1:3478?transport=tcp", "turns:192.0.2.1:5349"} {
		if got := browser_eval[string](p, fmt.Sprintf(`import('/assets/verdict.js').then((m) => m.judge([%q], [], [], {finished: false, elapsedMs: 5000})[0].verdict)`, u)); got != "unreachable" {
			t.Errorf("judge %s after 5 s: %q, want unreachable", u, got)
		}
	}
	left := browser_eval[int](p, `import('/assets/verdict.js').then((m) => m.judge(['turn:192.0.2.1:3478'], [], [], {finished: false, elapsedMs: 1200})[0].leftMs)`)
	if left != 3800 {
		t.Errorf("judge leftMs %d after 1.2 s, want 3800", left)
	}
	for u, ok := range map[string]bool{"stun:192.0.2.1": true, "turn:h.example:3478?transport=tcp": true, "turns:h.example": true,
		"stuns:h.example": false, "http://h.example": false, "turn:h.example:99999": false, "stun:h.example?transport=udp": false, "": false} {
		why := browser_eval[string](p, fmt.Sprintf(`import('/assets/verdict.js').then((m) => m.checkTesterURL(%q))`, u))
		if (why == "") != ok {
			t.Errorf("checkTesterURL(%q) = %q, want accepted %v", u, why, ok)
		}
	}
}

func TestBrowserMergeFeatures(t *testing.T) {
	tests := []struct {
		in, want []string
	}{
		{[]string{"chromium", "--disable-features=Translate,BlinkGenPropertyTrees", "--headless"},
			[]string{"chromium", "--disable-features=Translate,BlinkGenPropertyTrees," + browserMDNSFeature, "--headless"}},
		{[]string{"chromium", "--headless"}, []string{"chromium", "--headless", "--disable-features=" + browserMDNSFeature}},
		{[]string{"chromium", "--disable-features=" + browserMDNSFeature}, []string{"chromium", "--disable-features=" + browserMDNSFeature}},
		{[]string{"chromium", "--disable-features="}, []string{"chromium", "--disable-features=" + browserMDNSFeature}},
	}
	for _, tt := range tests {
		if got := browser_mergeFeatures(tt.in, browserMDNSFeature); !slices.Equal(got, tt.want) {
			t.Errorf("browser_mergeFeatures(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestBrowserFlags checks the command line Chromium really got: chromedp's
// own --disable-features entries are all still there, plus ours.
func TestBrowserFlags(t *testing.T) {
	p := browser_open(t, "flags", 800, 600)
	if len(p.chromedpFeatures) == 0 {
		t.Fatal("chromedp passed no --disable-features list; nothing was merged")
	}
	p.do(chromedp.Navigate("chrome://version"))
	text := browser_eval[string](p, `document.body.innerText`)
	m := regexp.MustCompile(`--disable-features=(\S+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("chrome://version shows no --disable-features")
	}
	got := strings.Split(m[1], ",")
	for _, f := range append(slices.Clone(p.chromedpFeatures), browserMDNSFeature) {
		if !slices.Contains(got, f) {
			t.Errorf("--disable-features=%s lacks %s", m[1], f)
		}
	}
	for _, f := range []string{"--allow-loopback-in-peer-connection", "--disable-quic", "--no-sandbox", "--user-data-dir="} {
		if !strings.Contains(text, f) {
			t.Errorf("command line lacks %s", f)
		}
	}
}
