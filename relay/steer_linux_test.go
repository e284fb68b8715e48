//go:build linux

package relay

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestSteerBySourceIP: the kernel runs the reuseport program and hands
// every datagram of one source IP, whatever its port, to the socket
// steerIndex names.
func TestSteerBySourceIP(t *testing.T) {
	for _, tc := range []struct {
		listen string
		srcs   []string
	}{
		{"127.0.0.1:0", []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8"}},
		{"[::1]:0", []string{"::1"}},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			const n = 4
			conns, err := listenUDPShared(tc.listen, n)
			if err != nil {
				if tc.listen[0] == '[' {
					t.Skipf("no IPv6 loopback: %v", err)
				}
				t.Fatal(err)
			}
			type hit struct {
				idx int
				src netip.AddrPort
			}
			hits := make(chan hit, 64)
			for i, c := range conns {
				t.Cleanup(func() { c.Close() })
				go func() {
					buf := make([]byte, 64)
					for {
						_, from, err := c.ReadFrom(buf)
						if err != nil {
							return
						}
						hits <- hit{i, toAddrPort(from)}
					}
				}()
			}
			sent := 0
			for _, s := range tc.srcs {
				for port := 0; port < 3; port++ {
					cl, err := net.ListenPacket("udp", net.JoinHostPort(s, "0"))
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { cl.Close() })
					if _, err := cl.WriteTo([]byte("x"), conns[0].LocalAddr()); err != nil {
						t.Fatal(err)
					}
					sent++
				}
			}
			seen := map[int]bool{}
			timeout := time.After(10 * time.Second)
			for i := 0; i < sent; i++ {
				select {
				case h := <-hits:
					if want := steerIndex(h.src.Addr(), n); h.idx != want {
						t.Errorf("datagram from %v reached socket %d, want %d", h.src, h.idx, want)
					}
					seen[h.idx] = true
				case <-timeout:
					t.Fatalf("%d of %d datagrams arrived", i, sent)
				}
			}
			if len(tc.srcs) > 4 && len(seen) < 2 {
				t.Errorf("%d sources all landed on one socket: %v", len(tc.srcs), fmt.Sprint(seen))
			}
		})
	}
}
