//go:build linux

package e2e

// Browser tests of the call features: the relay switch mid-call, audio and
// video with fake capture devices, display names and token-mode invites.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
	"github.com/rtcsuite/rtcsuite/signaling"
)

// browserSelectedPair is one page's selected candidate pair towards its
// first peer, read straight from RTCPeerConnection.getStats().
type browserSelectedPair struct {
	LocalType   string `json:"localType"`
	LocalAddr   string `json:"localAddr"`
	RemoteType  string `json:"remoteType"`
	RemoteAddr  string `json:"remoteAddr"`
	Restarts    int    `json:"restarts"`
	Epoch       int    `json:"epoch"`
	DataChannel string `json:"dc"`
}

// browser_jsSelectedPairStats evaluates to the selected pair of the page's
// only peer link when pred (a JS expression over p) holds, else null.
func browser_jsSelectedPairStats(pred string) string {
	return `(async () => {
  const [entry] = window.rtcsuite.links.values();
  if (!entry) return null;
  const link = entry.link;
  const report = await link.pc.getStats();
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  let pair = null;
  for (const s of byId.values()) if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
  if (!pair || pair.state !== 'succeeded') return null;
  const l = byId.get(pair.localCandidateId), r = byId.get(pair.remoteCandidateId);
  if (!l || !r) return null;
  const p = { localType: l.candidateType, localAddr: l.address + ':' + l.port, remoteType: r.candidateType,
    remoteAddr: r.address + ':' + r.port, restarts: link.restarts, epoch: link.epoch, dc: link.dc ? link.dc.readyState : 'none' };
  return (` + pred + `) ? p : null;
})()`
}

// TestBrowserRelaySwitch: the "Relay only" switch works mid-call on either
// page. Ticking it moves that page's side of the selected pair to a relay
// candidate (the other page, whose policy stays "all", sees that relay
// address as its remote), both ticked is relay⇄relay, and unticking both
// returns to a direct pair. Every step is checked on getStats of both pages,
// on the connection of that step (each switch replaces it: epoch n); the
// data channel survives all of it.
func TestBrowserRelaySwitch(t *testing.T) {
	testenv.NeedCommand(t, "chromium", "chromium")
	env := browser_startEnv(t, browserEnvConfig{roomCapacity: 2})
	a, b, _, bID, _ := browser_pair(t, env, "")
	const direct = `p.localType !== 'relay' && p.remoteType !== 'relay'`
	a0 := browser_wait[browserSelectedPair](a, "direct pair", browser_jsSelectedPairStats(direct))
	browser_wait[browserSelectedPair](b, "direct pair", browser_jsSelectedPairStats(direct))
	t.Logf("before: a %s %s -> %s %s", a0.LocalType, a0.LocalAddr, a0.RemoteType, a0.RemoteAddr)

	steps := []struct {
		name   string
		page   *browserPage
		on     bool
		a, b   string // predicates over p, a's and b's selected pair
		shot   string
		policy [2]string // a's and b's policy afterwards
	}{
		{"a ticks", a, true, `p.localType === 'relay'`, `p.remoteType === 'relay'`, "relay-switch-a-ticked", [2]string{"relay", "all"}},
		{"b ticks too", b, true, `p.localType === 'relay' && p.remoteType === 'relay'`, `p.localType === 'relay' && p.remoteType === 'relay'`, "relay-switch-both-ticked", [2]string{"relay", "relay"}},
		{"a unticks", a, false, `p.remoteType === 'relay'`, `p.localType === 'relay'`, "", [2]string{"all", "relay"}},
		{"b unticks", b, false, direct, direct, "relay-switch-direct-again", [2]string{"all", "all"}},
	}
	for i, st := range steps {
		epoch := i + 1
		start := time.Now()
		st.page.do(chromedp.Click(chromedp.ID("relay-only")))
		if got := browser_eval[bool](st.page, `document.getElementById('relay-only').checked`); got != st.on {
			t.Fatalf("%s: switch is %v", st.name, got)
		}
		on := func(pred string) string {
			return browser_jsSelectedPairStats(fmt.Sprintf(`p.epoch === %d && p.dc === 'open' && %s`, epoch, pred))
		}
		pa := browser_wait[browserSelectedPair](a, st.name+": a's pair", on(st.a))
		// b's side of the same pair: where a's is a relay, b's remote is
		// that relay address.
		bPred := st.b
		if pa.LocalType == "relay" {
			bPred += fmt.Sprintf(` && p.remoteAddr === %q`, pa.LocalAddr)
		}
		pb := browser_wait[browserSelectedPair](b, st.name+": b's pair", on(bPred))
		// And a's side of b's pair: where b's is a relay, a's remote is
		// that relay address. The two pages' stats are read one after the
		// other, and b holds a relay candidate per TURN transport; while ICE
		// settles a's snapshot can show b's other relay (seen once in CI:
		// a's remote 58853, b sending from 58781), so a is read again until
		// the pages agree, and the wait fails if they never do.
		if pb.LocalType == "relay" && pa.RemoteAddr != pb.LocalAddr {
			t.Logf("%s: a's remote %s is not b's relay %s yet; waiting for the pages to agree", st.name, pa.RemoteAddr, pb.LocalAddr)
			pa = browser_wait[browserSelectedPair](a, st.name+": a's pair towards b's relay "+pb.LocalAddr,
				on(st.a+fmt.Sprintf(` && p.remoteAddr === %q`, pb.LocalAddr)))
		}
		t.Logf("%s: %v until both pages' pairs comply: a %s %s -> %s %s; b %s %s -> %s %s", st.name, time.Since(start).Round(10*time.Millisecond),
			pa.LocalType, pa.LocalAddr, pa.RemoteType, pa.RemoteAddr, pb.LocalType, pb.LocalAddr, pb.RemoteType, pb.RemoteAddr)
		// The tick applies to its own page only; the live panel shows the
		// policy, the new connection and whether its side is relayed.
		for j, p := range []*browserPage{a, b} {
			relayed := []browserSelectedPair{pa, pb}[j].LocalType == "relay"
			browser_wait[bool](p, st.name+": panel", fmt.Sprintf(`(() => { const c = document.querySelector('[data-testid=peer]');
  return c.dataset.policy === %q && c.dataset.connections === '%d' && c.dataset.selectedLocal !== undefined && (c.dataset.selectedLocal === 'relay') === %t; })()`, st.policy[j], epoch+1, relayed))
		}
		if st.shot != "" {
			st.page.shot(st.shot)
		}
	}
	b.do(chromedp.SetValue(chromedp.ID("chat-input"), "after the switches"), chromedp.Click(chromedp.ID("chat-send")))
	browser_wait[bool](a, "chat after the switches", browser_jsChatFrom(bID, "after the switches"))
}

// browserFakeMedia makes Chromium capture from its built-in test pattern
// and beep, without asking.
var browserFakeMedia = []chromedp.ExecAllocatorOption{
	chromedp.Flag("use-fake-device-for-media-stream", true),
	chromedp.Flag("use-fake-ui-for-media-stream", true),
}

type browserMediaStat struct {
	Dir           string `json:"dir"`
	Kind          string `json:"kind"`
	Codec         string `json:"codec"`
	FramesDecoded string `json:"framesDecoded"`
}

// browser_jsMediaIn returns the live panel's inbound media rows once
// inbound audio and video have codecs and more than min frames decoded.
func browser_jsMediaIn(min int) string {
	return fmt.Sprintf(`(() => {
  const rows = [...document.querySelectorAll('[data-testid=peer] [data-testid=media-stat][data-dir=in]')].map((r) => ({...r.dataset}));
  const v = rows.find((r) => r.kind === 'video'), a = rows.find((r) => r.kind === 'audio');
  return v && a && v.codec && a.codec && Number(v.framesDecoded) > %d ? rows : null; })()`, min)
}

// TestBrowserCall: two pages with Chromium's fake camera and microphone
// start a call in their room. Each shows a tile per peer, receives audio
// and video (codecs in the live panel, framesDecoded growing), mute and
// camera toggles act on the sent tracks, a name set mid-call reaches the
// other page, and chat keeps working alongside.
func TestBrowserCall(t *testing.T) {
	testenv.NeedCommand(t, "chromium", "chromium")
	env := browser_startEnv(t, browserEnvConfig{roomCapacity: 2})
	a := browser_open(t, "a", 1280, 1000, browserFakeMedia...)
	a.do(chromedp.Navigate(env.base + "/"))
	browser_wait[string](a, "a joined", browserJSJoined)
	link := browser_eval[string](a, `document.getElementById('share-link').value`)
	b := browser_open(t, "b", 1280, 1000, browserFakeMedia...)
	b.do(chromedp.Navigate(link))
	bID := browser_wait[string](b, "b joined", browserJSJoined)
	pages := []*browserPage{a, b}
	for _, p := range pages {
		browser_wait[browserPeerCard](p, "data channel open", browserJSOpenPeer)
	}
	for _, p := range pages {
		p.do(chromedp.Click(chromedp.ID("call-start")))
	}
	first := map[*browserPage]int{}
	for _, p := range pages {
		rows := browser_wait[[]browserMediaStat](p, "inbound audio and video", browser_jsMediaIn(0))
		for _, r := range rows {
			if r.Kind == "video" {
				n, err := strconv.Atoi(r.FramesDecoded)
				if err != nil {
					t.Fatalf("%s: framesDecoded %q: %v", p.name, r.FramesDecoded, err)
				}
				first[p] = n
			}
		}
		t.Logf("%s receives %+v", p.name, rows)
		tiles := browser_wait[[]string](p, "a tile per peer with video", `(() => {
  const t = [...document.querySelectorAll('[data-testid=tile]')];
  return t.length === 2 && t.every((f) => f.querySelector('video').videoWidth > 0) ? t.map((f) => f.dataset.peerId) : null; })()`)
		t.Logf("%s tiles %v", p.name, tiles)
	}
	// framesDecoded keeps growing on both sides.
	for _, p := range pages {
		browser_wait[[]browserMediaStat](p, "more frames decoded", browser_jsMediaIn(first[p]))
	}
	a.shot("call-a")
	b.shot("call-b")

	// The call survives a switch to the relay mid-call: a's side moves to a
	// relay candidate and both pages decode frames on the new connection.
	a.do(chromedp.Click(chromedp.ID("relay-only")))
	browser_wait[browserSelectedPair](a, "a relayed", browser_jsSelectedPairStats(`p.localType === 'relay' && p.dc === 'open'`))
	for _, p := range pages {
		browser_wait[[]browserMediaStat](p, "frames over the new connection", `(() => {
  const c = document.querySelector('[data-testid=peer]');
  return c.dataset.connections === '2' ? (`+browser_jsMediaIn(0)+`) : null; })()`)
	}
	browser_wait[bool](b, "a tile per peer after the switch", `(() => { const t = [...document.querySelectorAll('[data-testid=tile]')]; return t.length === 2 && t.every((f) => f.querySelector('video').videoWidth > 0); })()`)
	b.shot("call-b-after-relay-switch")

	// Mute and camera off act on the tracks a sends; the call goes on.
	a.do(chromedp.Click(chromedp.ID("call-mute")), chromedp.Click(chromedp.ID("call-camera")))
	got := browser_eval[map[string]bool](a, `(() => { const s = window.rtcsuite.localStream;
  return {audio: s.getAudioTracks()[0].enabled, video: s.getVideoTracks()[0].enabled,
    mutePressed: document.getElementById('call-mute').getAttribute('aria-pressed') === 'true',
    cameraPressed: document.getElementById('call-camera').getAttribute('aria-pressed') === 'true'}; })()`)
	if got["audio"] || got["video"] || !got["mutePressed"] || !got["cameraPressed"] {
		t.Errorf("after mute and camera off: %v", got)
	}

	// A name typed mid-call reaches the other page; chat still flows.
	a.do(chromedp.SetValue(chromedp.ID("display-name"), "Ada"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('display-name').dispatchEvent(new Event('change'))`))
	browser_wait[bool](b, "a's name on b", `document.querySelector('[data-testid=peer]').dataset.peerName === 'Ada'`)
	if stored := browser_eval[string](a, `localStorage.getItem('rtcsuite.name')`); stored != "Ada" {
		t.Errorf("name stored as %q", stored)
	}
	b.do(chromedp.SetValue(chromedp.ID("chat-input"), "during the call"), chromedp.Click(chromedp.ID("chat-send")))
	browser_wait[bool](a, "chat during the call", browser_jsChatFrom(bID, "during the call"))
	a.do(chromedp.SetValue(chromedp.ID("chat-input"), "named"), chromedp.Click(chromedp.ID("chat-send")))
	browser_wait[bool](b, "chat shows a's name", `[...document.querySelectorAll('[data-testid=chat-msg] .who')].some((w) => w.textContent === 'Ada')`)
	a.shot("call-a-muted")

	// a hangs up: its tile leaves b's page, b's own tile stays, and b
	// still sends to a.
	a.do(chromedp.Click(chromedp.ID("call-stop")))
	browser_wait[bool](b, "a's tile gone", `(() => { const t = [...document.querySelectorAll('[data-testid=tile]')].map((f) => f.dataset.peerId); return t.length === 1 && t[0] === 'me'; })()`)
	browser_wait[bool](a, "b's tile still on a", `document.querySelectorAll('[data-testid=tile]').length === 1 && document.querySelector('[data-testid=tile] video').videoWidth > 0`)
}

// browser_jwtClaims decodes a JWT's claims without verifying it.
func browser_jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("%q is not a JWT", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("JWT claims: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("JWT claims: %v", err)
	}
	return c
}

// TestBrowserInvite: a hub in token mode. Ada's page (her token names
// her) shares a link that carries an invite the hub minted for the room
// (not her token, no name, about an hour). Bob opens it with his name
// remembered on his device: he joins the room, each page shows the other's
// name, and the same invite is refused for another room.
func TestBrowserInvite(t *testing.T) {
	testenv.NeedCommand(t, "chromium", "chromium")
	secret := []byte("browser-invite-test-secret-32-bytes!")
	env := browser_startEnv(t, browserEnvConfig{roomCapacity: 3, tokenSecret: secret})
	const room = "team-standup"
	own, err := signaling.MintToken(secret, signaling.TokenClaims{Room: room, Name: "Ada", Expires: time.Now().Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	a := browser_open(t, "ada", 1280, 900)
	a.do(chromedp.Navigate(env.base + "/?room=" + room + "&token=" + own))
	browser_wait[string](a, "ada joined", browserJSJoined)
	if got := browser_eval[map[string]any](a, `({value: document.getElementById('display-name').value, disabled: document.getElementById('display-name').disabled, self: document.getElementById('self-name').textContent})`); got["value"] != "Ada" || got["disabled"] != true || got["self"] != "Ada" {
		t.Errorf("name field with a named token: %v, want Ada, read-only", got)
	}
	if search := browser_eval[string](a, `location.search`); strings.Contains(search, "token") {
		t.Errorf("the address bar still carries the token: %s", search)
	}
	link := browser_wait[string](a, "share link with an invite", `document.getElementById('share-link').dataset.invite === 'yes' && document.getElementById('share-link').value`)
	if strings.Contains(link, own) {
		t.Fatalf("the share link carries Ada's own token: %s", link)
	}
	u, err := url.Parse(link)
	if err != nil || u.Query().Get("room") != room {
		t.Fatalf("share link %q: want room %s", link, room)
	}
	invite := u.Query().Get("token")
	claims := browser_jwtClaims(t, invite)
	exp, _ := claims["exp"].(float64)
	if claims["room"] != room || claims["name"] != nil || time.Until(time.Unix(int64(exp), 0)) > time.Hour || time.Until(time.Unix(int64(exp), 0)) < 50*time.Minute {
		t.Errorf("invite claims %v: want room %s, no name, about an hour", claims, room)
	}
	if note := browser_eval[string](a, `document.getElementById('invite-note').textContent`); !strings.Contains(note, "this room only") {
		t.Errorf("invite note %q", note)
	}

	b := browser_open(t, "bob", 1280, 900)
	b.do(chromedp.Navigate(env.base+"/turn"),
		chromedp.Evaluate[chromedp.Void](`localStorage.setItem('rtcsuite.name', 'Bob')`),
		chromedp.Navigate(link))
	bID := browser_wait[string](b, "bob joined", browserJSJoined)
	if self := browser_eval[string](b, `document.getElementById('self-name').textContent`); self != "Bob" {
		t.Errorf("bob's own name from the hub: %q, want Bob", self)
	}
	browser_wait[bool](a, "bob's name on ada's page", `(() => { const c = document.querySelector('[data-testid=peer][data-dc=open]'); return c && c.dataset.peerName === 'Bob'; })()`)
	browser_wait[bool](b, "ada's name on bob's page", `(() => { const c = document.querySelector('[data-testid=peer][data-dc=open]'); return c && c.dataset.peerName === 'Ada'; })()`)
	b.do(chromedp.SetValue(chromedp.ID("chat-input"), "thanks for the invite"), chromedp.Click(chromedp.ID("chat-send")))
	browser_wait[bool](a, "chat from bob, by name", fmt.Sprintf(`[...document.querySelectorAll('[data-testid=chat-msg]')].some((m) => m.dataset.from === %q && m.querySelector('.who').textContent === 'Bob')`, bID))
	// Bob can invite in turn, again with an invite, not with what he holds.
	bLink := browser_wait[string](b, "bob's share link", `document.getElementById('share-link').dataset.invite === 'yes' && document.getElementById('share-link').value`)
	bu, _ := url.Parse(bLink)
	if c := browser_jwtClaims(t, bu.Query().Get("token")); c["room"] != room || c["name"] != nil {
		t.Errorf("bob's invite claims %v", c)
	}
	// A reload keeps the token (this tab's sessionStorage), not the URL.
	a.do(chromedp.Reload())
	browser_wait[bool](a, "ada back after a reload", `document.getElementById('status').dataset.state === 'joined' && document.getElementById('self-name').textContent === 'Ada'`)
	browser_wait[bool](b, "bob sees ada again", `(() => { const c = document.querySelector('[data-testid=peer][data-dc=open]'); return c && c.dataset.peerName === 'Ada'; })()`)
	a.shot("invite-ada")
	b.shot("invite-bob")

	// The invite admits to its room only.
	c := browser_open(t, "elsewhere", 1024, 768)
	c.do(chromedp.Navigate(env.base + "/?room=another-room&token=" + url.QueryEscape(invite)))
	status := browser_wait[string](c, "refused", `document.getElementById('status').dataset.state === 'failed' && document.getElementById('status').textContent`)
	if !strings.Contains(status, "refused") || !strings.Contains(status, "another room") {
		t.Errorf("invite used for another room: %q, want a refusal naming the room mismatch", status)
	}
	c.shot("invite-other-room-refused")
}
