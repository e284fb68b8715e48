package e2e

// Browser tests of the call features: the relay switch mid-call, audio and
// video with fake capture devices, display names and token-mode invites.

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
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
