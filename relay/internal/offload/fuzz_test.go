//go:build linux

package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rtcsuite/rtcsuite/internal/checksum"
)

// FuzzProgram feeds arbitrary frames to the program with the table tests'
// bindings installed. Whatever comes in, the program must either hand the
// frame on untouched (TCX_NEXT) or forward a well-formed IP/UDP frame whose
// IPv4 header checksum is valid and whose UDP checksum verifies exactly as
// well as the input's did (the incremental update preserves the residual).
// It must never drop (a helper failing mid-rewrite).
func FuzzProgram(f *testing.F) {
	e := loadTestEngine(f, testConfig)
	for _, b := range []Binding{b4, b6, b4local, b6local, b4r2r, b4mtu} {
		if err := e.Upsert(b); err != nil {
			f.Fatal(err)
		}
	}
	data := payload(37)
	for _, b := range []Binding{b4, b6} {
		f.Add(c2pIn(b, data, []byte{1, 2, 3}).bytes())
		f.Add(c2pIn(b, data[:4], nil).bytes())
		f.Add(p2cIn(b, data).bytes())
		f.Add(withIPv6Ext(c2pIn(b6, data, nil).bytes(), 0))
	}
	f.Add(withIPv4Options(c2pIn(b4, data, nil).bytes()))
	f.Add(frame{src: b4.Client, dst: b4.Listener, payload: nil, ttl: 1, noCsum: true}.bytes())
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < ethLen {
			return // the kernel refuses shorter test input
		}
		v, out, err := e.run(append([]byte{}, in...), nil)
		if errors.Is(err, unix.EINVAL) {
			return // BPF_PROG_TEST_RUN refuses it (e.g. an IP ethertype without an IP header)
		}
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		switch v {
		case verdictNext:
			if !bytes.Equal(out, in) {
				t.Fatalf("TCX_NEXT with a modified frame:\n% x\n% x", in, out)
			}
		case verdictRedirect:
			checkForwarded(t, in, out)
		default:
			t.Fatalf("verdict %d for\n% x", int32(v), in)
		}
	})
}

func checkForwarded(t *testing.T, in, out []byte) {
	t.Helper()
	src, dst, udp, ok := parseFrame(out)
	if !ok {
		t.Fatalf("forwarded frame is not IP/UDP:\n% x", out)
	}
	if ethLen+len(udp)+ipHeaderLen(src.Is4()) != len(out) {
		t.Fatalf("forwarded frame has %d bytes past its IP length", len(out)-ethLen-len(udp)-ipHeaderLen(src.Is4()))
	}
	if src.Is4() && checksum.Fold(checksum.Sum16(out[ethLen:ethLen+ip4Len])) != 0xffff {
		t.Fatalf("IPv4 header checksum wrong in\n% x", out)
	}
	isrc, idst, iudp, ok := parseFrame(in)
	if !ok {
		t.Fatalf("forwarded a frame that is not IP/UDP:\n% x", in)
	}
	inCheck := binary.BigEndian.Uint16(iudp[6:])
	if inCheck == 0 || inCheck == checksum.Fold(checksum.PseudoHeader(isrc, idst, len(iudp))) {
		return // no checksum, or a partial one: covered by the table tests
	}
	if r, w := residual(src, dst, udp), residual(isrc, idst, iudp); r != w {
		t.Fatalf("UDP checksum residual %#04x, input's %#04x:\n% x\n% x", r, w, in, out)
	}
}

func ipHeaderLen(v4 bool) int {
	if v4 {
		return ip4Len
	}
	return ip6Len
}

// residual is the ones'-complement sum a receiver checks (0xffff for a
// correct checksum), with +0 and -0 identified.
func residual(src, dst netip.Addr, udp []byte) uint16 {
	r := checksum.Fold(checksum.PseudoHeader(src, dst, len(udp)) + checksum.Sum16(udp))
	if r == 0 {
		r = 0xffff
	}
	return r
}
