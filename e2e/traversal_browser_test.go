//go:build linux

package e2e

// Real browsers in the traversal lab (issue 12, part 3): two headless
// Chromium instances, each started in its own LAN namespace through a
// wrapper script (`ip netns exec NS chromium …`, driven over chromedp's
// default pipe: a debugging port would bind the namespace's own
// 127.0.0.1), repeat four matrix cells. The path Chromium picks must equal
// the one pion's peers pick in the same lab and the one natprobe's
// prediction implies.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rtcsuite/rtcsuite/e2e/natlab"
	"github.com/rtcsuite/rtcsuite/internal/testenv"
	"github.com/rtcsuite/rtcsuite/internal/turnrest"
)

// traversal_browserResult is what the page reports for one side.
type traversal_browserResult struct {
	OK     bool    `json:"ok"`
	MS     float64 `json:"ms"`
	Local  string  `json:"local"`
	Remote string  `json:"remote"`
	LA     string  `json:"la"`
	RA     string  `json:"ra"`
	State  string  `json:"state"`
}

// traversal_openBrowser starts Chromium inside namespace ns and returns a
// chromedp context for its tab.
func traversal_openBrowser(t *testing.T, ns string) context.Context {
	t.Helper()
	exe := testenv.NeedCommand(t, "chromium", "chromium")
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "chromium-in-netns")
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", ns, exe)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(wrapper),
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			// Host candidates must show real addresses, not mDNS names
			// (merged into chromedp's own --disable-features list).
			cmd.Args = browser_mergeFeatures(cmd.Args, browserMDNSFeature)
			if cmd.SysProcAttr == nil {
				cmd.SysProcAttr = &syscall.SysProcAttr{}
			}
			cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
		}),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); acancel() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium in %s: %v", ns, err)
	}
	return ctx
}

func traversal_eval[T any](t *testing.T, ctx context.Context, what, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, traversal_cellTimeout+15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// traversal_pageJS defines the page's side of a cell: non-trickle
// negotiation (the test carries the descriptions), candidates of the far
// side restricted to IPv4 UDP (the pion peers use IPv4 UDP too; the lab
// also routes IPv6), then the selected pair from getStats.
const traversal_pageJS = `
window.trv = {
  async gather(pc) {
    await new Promise(r => {
      if (pc.iceGatheringState === 'complete') return r();
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r());
      setTimeout(r, 8000);
    });
    return JSON.stringify(pc.localDescription);
  },
  onlyUDP4(desc) {
    const d = JSON.parse(desc);
    d.sdp = d.sdp.split('\r\n').filter(l => {
      if (!l.startsWith('a=candidate:')) return true;
      const f = l.split(' ');
      return f[2].toLowerCase() === 'udp' && !f[4].includes(':');
    }).join('\r\n');
    return d;
  },
  start(cfg) {
    window.t0 = performance.now();
    window.pc = new RTCPeerConnection(cfg);
    window.opened = new Promise(r => {
      const watch = c => { if (c.readyState === 'open') r(performance.now()); else c.onopen = () => r(performance.now()); };
      pc.ondatachannel = e => watch(e.channel);
      window.watch = watch;
    });
  },
  async offer(cfg) {
    trv.start(cfg);
    watch(pc.createDataChannel('cell'));
    await pc.setLocalDescription();
    return trv.gather(pc);
  },
  async answer(cfg, offer) {
    trv.start(cfg);
    await pc.setRemoteDescription(trv.onlyUDP4(offer));
    await pc.setLocalDescription();
    return trv.gather(pc);
  },
  async accept(answer) { await pc.setRemoteDescription(trv.onlyUDP4(answer)); return true; },
  async result(ms) {
    const t = await Promise.race([window.opened, new Promise(r => setTimeout(() => r(-1), ms))]);
    if (t < 0) return JSON.stringify({ok: false, state: pc.iceConnectionState});
    const st = await pc.getStats();
    let tr;
    st.forEach(s => { if (s.type === 'transport' && s.selectedCandidatePairId) tr = s; });
    const pair = st.get(tr.selectedCandidatePairId);
    const l = st.get(pair.localCandidateId), rc = st.get(pair.remoteCandidateId);
    return JSON.stringify({ok: true, ms: t - window.t0, local: l.candidateType, remote: rc.candidateType,
      la: l.address + ':' + l.port, ra: rc.address + ':' + rc.port, state: pc.iceConnectionState});
  },
};
true`

// traversal_browserConfig is the RTCConfiguration for a mode, with TURN
// REST credentials minted from the lab's secret.
func traversal_browserConfig(mode string) string {
	cred := turnrest.Mint([]byte(traversal_secret), "chromium", time.Now().Add(time.Hour))
	var servers []map[string]any
	turn := func(urls ...string) map[string]any {
		return map[string]any{"urls": urls, "username": cred.Username, "credential": cred.Password}
	}
	switch mode {
	case traversal_modeSTUN:
		servers = append(servers, map[string]any{"urls": []string{"stun:203.0.113.10:3478"}})
	case traversal_modeUDP:
		servers = append(servers, map[string]any{"urls": []string{"stun:203.0.113.10:3478"}}, turn("turn:203.0.113.10:3478?transport=udp"))
	case traversal_modeTCP:
		servers = append(servers, turn("turn:203.0.113.10:3478?transport=tcp", "turns:203.0.113.10:443?transport=tcp"))
	}
	b, _ := json.Marshal(map[string]any{"iceServers": servers})
	return string(b)
}

// traversal_browserCell runs one cell with a Chromium on each side.
func traversal_browserCell(t *testing.T, a, b context.Context, mode string) [2]traversal_browserResult {
	t.Helper()
	for _, ctx := range []context.Context{a, b} {
		traversal_eval[bool](t, ctx, "install page code", traversal_pageJS)
	}
	cfg := traversal_browserConfig(mode)
	offer := traversal_eval[string](t, a, "offer", "trv.offer("+cfg+")")
	offerJS, _ := json.Marshal(offer)
	answer := traversal_eval[string](t, b, "answer", "trv.answer("+cfg+", "+string(offerJS)+")")
	answerJS, _ := json.Marshal(answer)
	traversal_eval[bool](t, a, "accept", "trv.accept("+string(answerJS)+")")
	var out [2]traversal_browserResult
	done := make(chan error, 2)
	for i, ctx := range []context.Context{a, b} {
		go func() {
			c, cancel := context.WithTimeout(ctx, traversal_cellTimeout+10*time.Second)
			defer cancel()
			s, err := chromedp.Run(c, chromedp.Evaluate[string](fmt.Sprintf("trv.result(%d)", traversal_cellTimeout.Milliseconds()), chromedp.EvalAwaitPromise))
			if err == nil {
				err = json.Unmarshal([]byte(s), &out[i])
			}
			done <- err
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("browser result: %v", err)
		}
	}
	return out
}

func TestTraversalBrowsers(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip", "iproute2")
	testenv.NeedCommand(t, "nft", "nftables")
	testenv.NeedCommand(t, "conntrack", "conntrack")
	testenv.NeedCommand(t, "chromium", "chromium")
	bins := traversal_build(t)
	var rows []string
	c := map[string]natlab.Case{}
	for _, x := range natlab.PairCases() {
		c[x.Key()] = x
	}
	for _, cell := range []struct {
		a, b natlab.Case
		mode string
	}{
		{c["eim-eif"], c["eim-eif"], traversal_modeSTUN},    // both endpoint-independent: direct
		{c["apdm-apdf"], c["eim-apdf"], traversal_modeUDP},  // symmetric vs port-restricted: relay
		{c["apdm-apdf"], c["apdm-apdf"], traversal_modeUDP}, // symmetric vs symmetric: relay
		{c["blocked"], c["eim-apdf"], traversal_modeTCP},    // UDP blocked: TURN over TCP
	} {
		t.Run(cell.a.Key()+"_x_"+cell.b.Key()+"_"+cell.mode, func(t *testing.T) {
			pc := traversal_pairCells{cell.a, cell.b, []string{cell.mode}}
			p, pion := traversal_pairLab(t, bins, pc)
			ba, bb := traversal_openBrowser(t, p.LANNS(natlab.SideA)), traversal_openBrowser(t, p.LANNS(natlab.SideB))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := p.ResetNAT(ctx); err != nil {
				t.Fatal(err)
			}
			res := traversal_browserCell(t, ba, bb, cell.mode)
			observed := "direct"
			switch {
			case !res[0].OK || !res[1].OK:
				observed = "fail"
			case res[0].Local == "relay" || res[1].Local == "relay":
				observed = "relay"
			}
			want := pion[0]
			t.Logf("chromium: %s (%s/%s, %s -> %s and %s -> %s, %.0f ms); pion: %s (%s); predicted %s, expected %s",
				observed, res[0].Local, res[1].Local, res[0].LA, res[0].RA, res[1].LA, res[1].RA, max(res[0].MS, res[1].MS),
				want.Observed, want.Types, want.Predicted, want.Expected)
			if observed != want.Expected || observed != want.Observed {
				t.Errorf("chromium's path %s (states %s / %s) differs from pion's %s or the prediction's %s",
					observed, res[0].State, res[1].State, want.Observed, want.Expected)
			}
			rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | **%s** %s→%s / %s→%s, %.0f ms | **%s** %s, %.0f ms |",
				cell.a.Key(), cell.b.Key(), traversal_modeName[cell.mode], want.Predicted, observed,
				res[0].Local, res[0].Remote, res[1].Local, res[1].Remote, max(res[0].MS, res[1].MS), want.Observed, want.Types, want.MS))
		})
	}
	if doc := os.Getenv("TRAVERSAL_DOC"); doc != "" && !t.Failed() {
		f, err := os.OpenFile(doc, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fmt.Fprintf(f, `
## Real browsers

TestTraversalBrowsers: two headless Chromium instances (Debian's package), each started in its own LAN
namespace by a wrapper script (`+"`ip netns exec NS chromium …`"+`, driven over chromedp's default pipe;
mDNS hiding of host candidates off), repeat four cells with non-trickle offer/answer carried by the
test and the far side's candidates limited to IPv4 UDP, as the pion peers use. Chromium's path must
equal pion's in the same lab and the prediction's. Chromium's time runs from creating the peer
connection (gathering included) to the open data channel.

| A | B | mode | natprobe predict | Chromium | pion |
|---|---|---|---|---|---|
%s
`, strings.Join(rows, "\n"))
	}
}

var traversal_modeName = map[string]string{traversal_modeSTUN: "STUN", traversal_modeUDP: "STUN+TURN/UDP", traversal_modeTCP: "TURN/TCP", traversal_modeV6: "IPv6"}

// traversal_pairLab builds a pair, runs its pion cells, and returns the
// lab (kept for the browsers) with the cells.
func traversal_pairLab(t *testing.T, bins traversal_bins, pc traversal_pairCells) (*natlab.Pair, []traversal_cell) {
	t.Helper()
	var p *natlab.Pair
	cells := traversal_pairWith(t, bins, pc, func(lab *natlab.Pair) { p = lab })
	if t.Failed() {
		t.FailNow()
	}
	return p, cells
}
