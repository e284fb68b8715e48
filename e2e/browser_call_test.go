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
    remoteAddr: r.address + ':' + r.port, restarts: link.restarts, dc: link.dc ? link.dc.readyState : 'none' };
  return (` + pred + `) ? p : null;
})()`
}

// TestBrowserRelaySwitch: the "Relay only" switch works mid-call on either
// page. Ticking it moves that page's side of the selected pair to a relay
// candidate (the other page sees the relay address as its remote), both
// ticked is relay⇄relay, and unticking returns to a direct pair. Every step
// is checked on getStats of both pages; the data channel survives all of it.
func TestBrowserRelaySwitch(t *testing.T) {
	testenv.NeedCommand(t, "chromium", "chromium")
	env := browser_startEnv(t, browserEnvConfig{roomCapacity: 2})
	a, b, _, bID, _ := browser_pair(t, env, "")
	direct := `p.localType !== 'relay' && p.remoteType !== 'relay' && p.dc === 'open'`
	a0 := browser_wait[browserSelectedPair](a, "direct pair", browser_jsSelectedPairStats(direct))
	browser_wait[browserSelectedPair](b, "direct pair", browser_jsSelectedPairStats(direct))
	t.Logf("before: a %+v", a0)

	toggle := func(p *browserPage, on bool) time.Time {
		t.Helper()
		p.do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const c = document.getElementById('relay-only');
  if (c.checked !== %t) c.click(); })()`, on)))
		return time.Now()
	}
	step := func(name string, p *browserPage, on bool, aPred, bPred string) {
		t.Helper()
		start := toggle(p, on)
		pa := browser_wait[browserSelectedPair](a, name+": a's pair", browser_jsSelectedPairStats(aPred))
		pb := browser_wait[browserSelectedPair](b, name+": b's pair", browser_jsSelectedPairStats(bPred))
		t.Logf("%s after %v: a %s %s -> %s %s; b %s %s -> %s %s", name, time.Since(start).Round(10*time.Millisecond),
			pa.LocalType, pa.LocalAddr, pa.RemoteType, pa.RemoteAddr, pb.LocalType, pb.LocalAddr, pb.RemoteType, pb.RemoteAddr)
		if pa.LocalType == "relay" && pb.RemoteAddr != pa.LocalAddr {
			t.Errorf("%s: a sends from relay %s but b's remote is %s", name, pa.LocalAddr, pb.RemoteAddr)
		}
		if pb.LocalType == "relay" && pa.RemoteAddr != pb.LocalAddr {
			t.Errorf("%s: b sends from relay %s but a's remote is %s", name, pb.LocalAddr, pa.RemoteAddr)
		}
	}
	open := ` && p.dc === 'open'`
	step("a ticks", a, true, `p.localType === 'relay'`+open, `p.localType !== 'relay'`+open)
	a.shot("relay-switch-a-ticked")
	step("b ticks too", b, true, `p.localType === 'relay' && p.remoteType === 'relay'`+open, `p.localType === 'relay' && p.remoteType === 'relay'`+open)
	b.shot("relay-switch-both-ticked")
	step("a unticks", a, false, `p.localType !== 'relay'`+open, `p.localType === 'relay'`+open)
	step("b unticks", b, false, direct, direct)
	b.shot("relay-switch-direct-again")

	// The live panel shows what getStats shows.
	browser_wait[bool](a, "panel shows a direct pair", `(() => { const c = document.querySelector('[data-testid=peer]'); return c.dataset.selectedLocal !== 'relay' && c.dataset.selectedRemote !== 'relay'; })()`)
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
