//go:build linux

package e2e

// The NAT lab of issue 4: natprobe, run on a LAN host behind a router
// namespace whose nftables rules emulate one NAT behaviour per case, must
// classify every case exactly, against turnd in RFC 5780 mode and against
// coturn 4.6.1, and both must agree. Asking coturn on its second address
// must be reported as a server problem. The lab itself is checked
// independently (raw probe, turnutils_natdiscovery) in e2e/natlab.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rtcsuite/rtcsuite/e2e/natlab"
	"github.com/rtcsuite/rtcsuite/internal/testenv"
	"github.com/rtcsuite/rtcsuite/natclass"
)

// natlab_build compiles ./cmd/<name> into dir and returns the binary.
func natlab_build(t *testing.T, dir, name string) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the e2e directory")
	}
	bin := filepath.Join(dir, name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/"+name)
	cmd.Dir = filepath.Dir(filepath.Dir(file))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, out)
	}
	return bin
}

// natlab_probe runs natprobe --json in the lab's LAN namespace against
// server and parses the report with natclass.ParseReport (so the output
// also has to satisfy the documented schema).
func natlab_probe(ctx context.Context, lab *natlab.Lab, bin string, server netip.AddrPort) (natclass.Report, []byte, error) {
	return natlab_probeArgs(ctx, lab, bin, server)
}

// natlab_probeArgs is natlab_probe with extra natprobe flags.
func natlab_probeArgs(ctx context.Context, lab *natlab.Lab, bin string, server netip.AddrPort, extra ...string) (natclass.Report, []byte, error) {
	args := append([]string{"netns", "exec", lab.NS(natlab.LAN), bin, "--json", "-4", "-q", "--server", server.String()}, extra...)
	cmd := exec.CommandContext(ctx, "ip", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		return natclass.Report{}, stdout.Bytes(), err
	}
	rep, perr := natclass.ParseReport(bytes.NewReader(stdout.Bytes()))
	if perr != nil {
		return rep, stdout.Bytes(), fmt.Errorf("%w (exit %v; stderr %s)", perr, err, stderr.String())
	}
	return rep, stdout.Bytes(), nil
}

// natlab_got is the classification part of a natprobe result, in the
// shape of natlab.Want.
func natlab_got(r natclass.Result) natlab.Want {
	return natlab.Want{Verdict: string(r.Verdict), NAT: string(r.NAT), Mapping: string(r.Mapping),
		Filtering: string(r.Filtering), Hairpinning: string(r.Hairpinning),
		PortPreservation: string(r.PortPreservation), Classic: r.Classic}
}

func TestNATLab(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip", "iproute2")
	testenv.NeedCommand(t, "nft", "nftables")
	testenv.NeedCommand(t, "turnserver", "coturn")
	dir := t.TempDir()
	natprobe := natlab_build(t, dir, "natprobe")
	turnd := natlab_build(t, dir, "turnd")

	natlab.ForEachCase(t, natlab.Cases(), 6, func(t *testing.T, c natlab.Case) {
		lab := natlab.New(t, c)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := lab.StartCoturn(ctx, t.TempDir()); err != nil {
			t.Fatal(err)
		}
		if _, err := lab.StartTurnd(ctx, turnd); err != nil {
			t.Fatal(err)
		}
		want := c.Want()
		results := map[string]natclass.Result{}
		for _, srv := range []struct {
			name string
			addr netip.AddrPort
		}{
			{"turnd", netip.AddrPortFrom(natlab.PublicIP1, natlab.TurndPort)},
			{"coturn", netip.AddrPortFrom(natlab.PublicIP1, natlab.CoturnPort)},
		} {
			rep, raw, err := natlab_probe(ctx, lab, natprobe, srv.addr)
			if err != nil {
				t.Errorf("natprobe against %s: %v\n%s", srv.name, err, raw)
				continue
			}
			res, ok := rep.Result("ipv4")
			if !ok {
				t.Errorf("natprobe against %s: no ipv4 result\n%s", srv.name, raw)
				continue
			}
			results[srv.name] = res
			t.Logf("%s: %+v (%.0f ms)", srv.name, natlab_got(res), rep.DurationMS)
			if got := natlab_got(res); got != want {
				t.Errorf("against %s:\n got  %+v\n want %+v\nreasons:\n  %s\nproblems: %q",
					srv.name, got, want, strings.Join(res.Reasons, "\n  "), res.Problems)
			}
		}
		if a, b := results["turnd"], results["coturn"]; len(results) == 2 && natlab_got(a) != natlab_got(b) {
			t.Errorf("turnd and coturn disagree:\n turnd  %+v\n coturn %+v", natlab_got(a), natlab_got(b))
		}

		// coturn asked on its second address names a wrong OTHER-ADDRESS
		// (coturn #667): a server problem, never a NAT type.
		if c.UDPBlocked {
			return
		}
		rep, raw, err := natlab_probe(ctx, lab, natprobe, netip.AddrPortFrom(natlab.PublicIP2, natlab.CoturnPort))
		if err != nil {
			t.Fatalf("natprobe against coturn's second address: %v\n%s", err, raw)
		}
		res, _ := rep.Result("ipv4")
		if res.Verdict != natclass.VerdictMisconfigured || len(res.Problems) == 0 {
			t.Errorf("coturn asked on its second address: verdict %q, problems %q; want %q with the problem named",
				res.Verdict, res.Problems, natclass.VerdictMisconfigured)
		}
		if res.Filtering != natclass.BehaviorUnknown || res.Classic != natclass.ClassicUnknown {
			t.Errorf("coturn asked on its second address: filtering %q, classic %q: a misconfigured server must not yield a NAT type",
				res.Filtering, res.Classic)
		}
	})
}

// TestNATLabWant checks that every value natlab.Want uses is one
// natclass's schema knows, by passing each expectation through
// natclass.ParseReport (runs everywhere, no root).
func TestNATLabWant(t *testing.T) {
	for _, c := range natlab.Cases() {
		w := c.Want()
		rep := natclass.Report{Schema: natclass.SchemaVersion, Results: []natclass.Result{{
			Family: "ipv4", Verdict: natclass.Verdict(w.Verdict), UDPBlocked: w.Verdict == string(natclass.VerdictUDPBlocked),
			NAT: natclass.Answer(w.NAT), Mapping: natclass.Behavior(w.Mapping), Filtering: natclass.Behavior(w.Filtering),
			Hairpinning: natclass.Answer(w.Hairpinning), PortPreservation: natclass.Answer(w.PortPreservation), Classic: w.Classic,
		}}}
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := natclass.ParseReport(bytes.NewReader(b)); err != nil {
			t.Errorf("%s: expectation %+v is not valid natprobe output: %v", c.Name(), w, err)
		}
	}
}
