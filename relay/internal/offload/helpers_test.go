//go:build linux

package offload

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf/btf"
	"github.com/rtcsuite/rtcsuite/internal/checksum"
	"github.com/rtcsuite/rtcsuite/internal/netlab"
	"github.com/rtcsuite/rtcsuite/internal/testenv"
)

var ap = netip.MustParseAddrPort

// testConfig is the relay the table tests pretend to be.
var testConfig = Config{
	ListenPorts:  []uint16{3478, 5349},
	RelayPortMin: 49152, RelayPortMax: 49200,
	OwnAddrs: []netip.Addr{
		netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.99"),
		netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:db8::99"),
	},
}

// loadTestEngine loads the program (root; skipped or failed through testenv
// otherwise) and closes it with the test.
func loadTestEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	testenv.NeedRoot(t)
	e, err := Load(cfg)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

// checkFrame verifies, from scratch, the IPv4 header checksum and the UDP
// checksum of an Ethernet frame (a zero IPv4 UDP checksum is accepted as
// "none" only when allowZero).
func checkFrame(t *testing.T, b []byte, allowZero bool) {
	t.Helper()
	src, dst, udp, ok := parseFrame(b)
	if !ok {
		t.Fatalf("output is not IP/UDP: % x", b)
	}
	if src.Is4() {
		if c := checksum.Fold(checksum.Sum16(b[ethLen : ethLen+ip4Len])); c != 0xffff {
			t.Errorf("IPv4 header checksum wrong (sum %#04x)", c)
		}
	}
	got := binary.BigEndian.Uint16(udp[6:])
	if got == 0 && src.Is4() && allowZero {
		return
	}
	if want := checksum.UDP(src, dst, udp); got != want {
		t.Errorf("UDP checksum %#04x, recomputed %#04x", got, want)
	}
}

// parseFrame splits an Ethernet/IP/UDP frame (no options, no extension
// headers) at the lengths its IP header states (internal/netlab).
func parseFrame(b []byte) (src, dst netip.Addr, udp []byte, ok bool) {
	s, d, udp, ok := netlab.ParseUDP(b)
	return s.Addr(), d.Addr(), udp, ok
}

// skbContext returns a __sk_buff for BPF_PROG_TEST_RUN with the GSO fields
// set, at the offsets the running kernel's BTF gives.
func skbContext(t *testing.T, gsoSegs, gsoSize uint32) []byte {
	t.Helper()
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatalf("kernel BTF: %v", err)
	}
	var s *btf.Struct
	if err := spec.TypeByName("__sk_buff", &s); err != nil {
		t.Fatalf("__sk_buff in kernel BTF: %v", err)
	}
	ctx := make([]byte, s.Size)
	for _, m := range s.Members {
		switch m.Name {
		case "gso_segs":
			binary.NativeEndian.PutUint32(ctx[m.Offset.Bytes():], gsoSegs)
		case "gso_size":
			binary.NativeEndian.PutUint32(ctx[m.Offset.Bytes():], gsoSize)
		}
	}
	return ctx
}
