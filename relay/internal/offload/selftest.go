//go:build linux

package offload

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// Verdicts of the program (tcx return codes).
const (
	verdictNext     = ^uint32(0) // TCX_NEXT (-1)
	verdictDrop     = 2          // TCX_DROP
	verdictRedirect = 7          // TCX_REDIRECT (bpf_redirect_neigh)
)

// run feeds one frame to the program through BPF_PROG_TEST_RUN.
func (e *Engine) run(in []byte, ctx any) (uint32, []byte, error) {
	out := make([]byte, len(in)+64)
	opts := &ebpf.RunOptions{Data: in, DataOut: out, Context: ctx}
	v, err := e.objs.TurnOffload.Run(opts)
	if err != nil {
		return 0, nil, err
	}
	return v, opts.DataOut, nil
}

// selfTest forwards synthetic ChannelData and UDP, IPv4 and IPv6, through
// the freshly loaded program (not yet attached) and compares every output
// byte with frames built from scratch. It leaves the maps and counters as
// it found them.
func (e *Engine) selfTest() error {
	cfg := Config{ListenPorts: []uint16{3478}, RelayPortMin: 49152, RelayPortMax: 49152}
	k := cfg.kernel(true)
	if err := e.objs.Config.Put(uint32(0), &k); err != nil {
		return fmt.Errorf("%w: write config: %w", ErrSelfTest, err)
	}
	var errs []error
	for _, fam := range []string{"4", "6"} {
		errs = append(errs, e.selfTestFamily(fam))
	}
	if err := e.resetReasons(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrSelfTest, err)
	}
	return nil
}

func (e *Engine) selfTestFamily(fam string) error {
	ap := netip.MustParseAddrPort
	b := Binding{
		Client: ap("192.0.2.1:40000"), Listener: ap("192.0.2.2:3478"),
		Relay: ap("192.0.2.2:49152"), Peer: ap("198.51.100.1:5000"),
		Channel: 0x4001,
		ToPeer:  Route{Ifindex: 1}, ToClient: Route{Ifindex: 1},
	}
	if fam == "6" {
		b.Client, b.Listener = ap("[2001:db8::1]:40000"), ap("[2001:db8::2]:3478")
		b.Relay, b.Peer = ap("[2001:db8::2]:49152"), ap("[2001:db8:1::1]:5000")
	}
	if err := e.Upsert(b); err != nil {
		return fmt.Errorf("IPv%s: install: %w", fam, err)
	}
	// On an early return the binding must not outlive the self-test; after
	// the explicit Remove below this finds nothing, which is fine.
	defer func() { _, _ = e.Remove(b.ID()) }()

	data := []byte("rtcsuite offload self-test")
	cases := []struct {
		name    string
		in, out frame
		verdict uint32
	}{
		{"client to peer",
			frame{src: b.Client, dst: b.Listener, payload: channelData(b.Channel, data, []byte{0, 0}), ttl: 50},
			frame{src: b.Relay, dst: b.Peer, payload: data, ttl: outTTL}, verdictRedirect},
		{"peer to client",
			frame{src: b.Peer, dst: b.Relay, payload: data, ttl: 50},
			frame{src: b.Listener, dst: b.Client, payload: channelData(b.Channel, data, nil), ttl: outTTL}, verdictRedirect},
	}
	for _, c := range cases {
		v, got, err := e.run(c.in.bytes(), nil)
		if err != nil {
			return fmt.Errorf("IPv%s %s: %w", fam, c.name, err)
		}
		if want := c.out.bytes(); v != c.verdict || !bytes.Equal(got, want) {
			return fmt.Errorf("IPv%s %s: verdict %d, want %d; output % x, want % x", fam, c.name, int32(v), c.verdict, got, want)
		}
	}
	st, err := e.Remove(b.ID())
	if err != nil {
		return fmt.Errorf("IPv%s: remove: %w", fam, err)
	}
	if st.ToPeerPackets != 1 || st.ToClientPackets != 1 || st.ToPeerBytes != uint64(len(data)) {
		return fmt.Errorf("IPv%s: counters %+v after one packet each way", fam, st)
	}
	return nil
}

func (e *Engine) resetReasons() error {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	zero := make([]uint64, n)
	for r := range numReasons {
		if err := e.objs.Reasons.Put(uint32(r), zero); err != nil {
			return fmt.Errorf("reset reason counters: %w", err)
		}
	}
	return nil
}
