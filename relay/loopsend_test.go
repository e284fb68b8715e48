//go:build linux

package relay

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestGSORunTakes(t *testing.T) {
	a, b := &sockaddr{}, &sockaddr{}
	for _, tc := range []struct {
		what string
		run  gsoRun
		to   *sockaddr
		n    int
		want bool
	}{
		{"same size", gsoRun{to: a, size: 1200, last: 1200, segs: 1}, a, 1200, true},
		{"shorter last", gsoRun{to: a, size: 1200, last: 1200, segs: 3}, a, 700, true},
		{"after a short one", gsoRun{to: a, size: 1200, last: 700, segs: 2}, a, 700, false},
		{"larger", gsoRun{to: a, size: 800, last: 800, segs: 1}, a, 1200, false},
		{"other destination", gsoRun{to: a, size: 1200, last: 1200, segs: 1}, b, 1200, false},
		{"segment bound", gsoRun{to: a, size: 100, last: 100, segs: gsoMaxSegs}, a, 100, false},
		{"byte bound", gsoRun{to: a, size: 9000, last: 9000, segs: 7}, a, 9000, false},
		{"byte bound, room", gsoRun{to: a, size: 9000, last: 9000, segs: 6}, a, 9000, true},
	} {
		if got := tc.run.takes(tc.to, tc.n); got != tc.want {
			t.Errorf("%s: takes = %v, want %v", tc.what, got, tc.want)
		}
	}
}

// gsoPair is a raw socket (a relay or listener socket of the loops) and a
// plain receiver on loopback, over IPv4 or (ipv6) IPv6.
func gsoPair(t *testing.T, ipv6 bool) (*rawUDP, *net.UDPConn, sockaddr) {
	t.Helper()
	if !gsoSupported() {
		testenv.SkipOrFail(t, "the kernel has no UDP_SEGMENT (Linux 4.18)")
	}
	network, family, lo := "udp4", unix.AF_INET, netip.MustParseAddr("127.0.0.1")
	if ipv6 {
		network, family, lo = "udp6", unix.AF_INET6, netip.IPv6Loopback()
	}
	c, err := listenRawUDP(network, netip.AddrPortFrom(lo, 0))
	if err != nil {
		testenv.SkipOrFail(t, fmt.Sprintf("no %s loopback: %v", network, err))
	}
	t.Cleanup(func() { c.Close() })
	rcv, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rcv.Close() })
	sa, ok := makeSockaddr(rcv.LocalAddr().(*net.UDPAddr).AddrPort(), family)
	if !ok {
		t.Fatal("no sockaddr")
	}
	return c, rcv, sa
}

// refuseGSO makes the kernel refuse segmented sends from c: UDP without
// checksums cannot be segmented (udp_send_skb: EINVAL).
func refuseGSO(t *testing.T, c *rawUDP) {
	t.Helper()
	if c.family == unix.AF_INET6 {
		// UDP_NO_CHECK6_TX refuses too, but a receiver drops IPv6
		// datagrams without checksums; the fallback is the same code.
		t.Fatal("refuseGSO: IPv4 only")
	}
	if err := unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_NO_CHECK, 1); err != nil {
		t.Fatal(err)
	}
}

// expectDatagrams reads len(want) datagrams from rcv and compares them,
// in order, with want; each must come from src.
func expectDatagrams(t *testing.T, rcv *net.UDPConn, src *net.UDPAddr, want [][]byte) {
	t.Helper()
	buf := make([]byte, 70000)
	for i, w := range want {
		if err := rcv.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, from, err := rcv.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i+1, len(want), err)
		}
		if from.Port != src.Port {
			t.Errorf("datagram %d from %v, want %v", i+1, from, src)
		}
		if !bytes.Equal(buf[:n], w) {
			t.Fatalf("datagram %d: %d bytes %x..., want %d bytes %x...", i+1, n, buf[:min(n, 8)], len(w), w[:min(len(w), 8)])
		}
	}
}

func payloads(sizes ...int) [][]byte {
	var ps [][]byte
	for i, n := range sizes {
		p := bytes.Repeat([]byte{byte(i + 1)}, n)
		copy(p, fmt.Sprintf("datagram %d", i))
		ps = append(ps, p)
	}
	return ps
}

// A relay loop's client→peer datagrams for one binding leave as one
// segmented send while they keep one size (the last may be shorter); the
// peer receives every datagram on its own, unchanged and in order. A
// kernel that refuses the segmented send gets them one by one, and the
// binding is not merged again.
func TestGSOClientToPeer(t *testing.T) {
	for _, tc := range []struct {
		what   string
		sizes  []int
		sends  []int // datagrams per send, in order
		refuse bool
	}{
		{"one size", []int{1200, 1200, 1200, 1200, 1200}, []int{5}, false},
		{"shorter last", []int{1200, 1200, 300}, []int{3}, false},
		{"larger after", []int{300, 1200, 1200}, []int{1, 2}, false},
		{"short in the middle", []int{1200, 300, 1200, 1200}, []int{2, 2}, false},
		{"one", []int{1200}, []int{1}, false},
		{"ring bound", []int{100, 100, 100, 100, 100, 100, 100, 100, 100}, []int{8, 1}, false},
		{"refused", []int{1200, 1200, 1200}, []int{3}, true},
	} {
		for _, ipv6 := range []bool{false, true} {
			if ipv6 && tc.refuse {
				continue // refuseGSO is IPv4 only
			}
			t.Run(fmt.Sprintf("%s/ipv6=%v", tc.what, ipv6), func(t *testing.T) {
				relay, peer, sa := gsoPair(t, ipv6)
				if tc.refuse {
					refuseGSO(t, relay)
				}
				bd := &binding{raw: relay, peerSA: sa}
				r := &c2pRun{gso: true}
				var tally counts
				snd := newNBSender()
				want := payloads(tc.sizes...)
				var sends []int
				for _, p := range want {
					before := r.run.segs
					r.add(bd, p, snd, &tally)
					if r.run.segs == 1 && before > 0 {
						sends = append(sends, before)
					}
				}
				sends = append(sends, r.run.segs)
				r.flush()
				if fmt.Sprint(sends) != fmt.Sprint(tc.sends) {
					t.Errorf("sends of %v datagrams, want %v", sends, tc.sends)
				}
				expectDatagrams(t, peer, relay.local, want)
				var bytesSent uint64
				for _, p := range want {
					bytesSent += uint64(len(p))
				}
				if got := bd.pktsC2P.Load(); got != uint64(len(want)) || bd.bytesC2P.Load() != bytesSent {
					t.Errorf("binding counted %d datagrams, %d bytes; want %d, %d", got, bd.bytesC2P.Load(), len(want), bytesSent)
				}
				if tally.pkts != uint64(len(want)) || tally.bytes != bytesSent || tally.sendFull != 0 {
					t.Errorf("tally %+v, want %d datagrams, %d bytes", tally, len(want), bytesSent)
				}
				if bd.noGSO.Load() != tc.refuse {
					t.Errorf("noGSO = %v, want %v", bd.noGSO.Load(), tc.refuse)
				}
				if tc.refuse { // not merged again
					r.add(bd, want[0], snd, &tally)
					r.add(bd, want[0], snd, &tally)
					if r.run.segs != 1 {
						t.Errorf("refused binding merged %d datagrams", r.run.segs)
					}
					r.flush()
					expectDatagrams(t, peer, relay.local, [][]byte{want[0], want[0]})
				}
			})
		}
	}
}

// Without gso (DisableGSO, or no kernel support) every datagram is a send
// of its own.
func TestGSOOff(t *testing.T) {
	relay, peer, sa := gsoPair(t, false)
	bd := &binding{raw: relay, peerSA: sa}
	r := &c2pRun{}
	var tally counts
	want := payloads(1200, 1200, 1200)
	for _, p := range want {
		r.add(bd, p, newNBSender(), &tally)
		if r.run.segs != 1 {
			t.Fatalf("merged %d datagrams with gso off", r.run.segs)
		}
	}
	r.flush()
	expectDatagrams(t, peer, relay.local, want)

	listener, client, csa := gsoPair(t, false)
	var o sendBatch
	o.init(newMetrics(), false)
	frames := channelFrames(0x4000, 1200, 1200)
	sock := &udpSock{raw: listener}
	for _, f := range frames {
		o.add(sock, &csa, bd, f)
	}
	if o.msgs != 2 {
		t.Errorf("%d messages for 2 frames with gso off", o.msgs)
	}
	o.send()
	expectDatagrams(t, client, listener.local, frames)
}

// channelFrames makes ChannelData frames with payloads of the sizes.
func channelFrames(channel uint16, sizes ...int) [][]byte {
	var fs [][]byte
	for _, p := range payloads(sizes...) {
		f := make([]byte, 4, 4+len(p))
		f[0], f[1] = byte(channel>>8), byte(channel)
		f[2], f[3] = byte(len(p)>>8), byte(len(p))
		fs = append(fs, append(f, p...))
	}
	return fs
}

// A relay loop's peer→client frames for one client address merge while
// they keep one size, whichever binding they belong to; a frame for
// another client starts a new message. Every frame arrives on its own and
// is counted on its binding.
func TestGSOPeerToClient(t *testing.T) {
	for _, tc := range []struct{ refuse, ipv6 bool }{{false, false}, {true, false}, {false, true}} {
		refuse := tc.refuse
		t.Run(fmt.Sprintf("refused=%v/ipv6=%v", tc.refuse, tc.ipv6), func(t *testing.T) {
			listener, client, csa := gsoPair(t, tc.ipv6)
			other, err := net.ListenUDP(client.LocalAddr().Network(), &net.UDPAddr{IP: client.LocalAddr().(*net.UDPAddr).IP})
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			osa, _ := makeSockaddr(other.LocalAddr().(*net.UDPAddr).AddrPort(), listener.family)
			if refuse {
				refuseGSO(t, listener)
			}
			b1, b2, b3 := &binding{}, &binding{}, &binding{}
			var o sendBatch
			o.init(newMetrics(), true)
			sock := &udpSock{raw: listener}
			toClient := channelFrames(0x4000, 1200, 1200, 1200, 1200, 500)
			toOther := channelFrames(0x4001, 1200, 1200)
			o.add(sock, &csa, b1, toClient[0])
			o.add(sock, &csa, b2, toClient[1]) // another channel of the same client
			o.add(sock, &csa, b1, toClient[2])
			o.add(sock, &osa, b3, toOther[0])
			o.add(sock, &osa, b3, toOther[1])
			o.add(sock, &csa, b1, toClient[3])
			o.add(sock, &csa, b1, toClient[4])
			var segs []int
			for m := 0; m < o.msgs; m++ {
				segs = append(segs, o.runs[m].segs)
			}
			if fmt.Sprint(segs) != "[3 2 2]" {
				t.Errorf("messages of %v frames, want [3 2 2]", segs)
			}
			o.send()
			expectDatagrams(t, client, listener.local, toClient)
			expectDatagrams(t, other, listener.local, toOther)
			for _, c := range []struct {
				what  string
				b     *binding
				pkts  uint64
				bytes uint64
			}{{"b1", b1, 4, 3*1200 + 500}, {"b2", b2, 1, 1200}, {"b3", b3, 2, 2400}} {
				if c.b.pktsP2C.Load() != c.pkts || c.b.bytesP2C.Load() != c.bytes {
					t.Errorf("%s counted %d frames, %d bytes; want %d, %d", c.what, c.b.pktsP2C.Load(), c.b.bytesP2C.Load(), c.pkts, c.bytes)
				}
			}
			if o.pending.sendFull != 0 {
				t.Errorf("%d frames counted as dropped", o.pending.sendFull)
			}
			if b1.noGSO.Load() != refuse || b3.noGSO.Load() != refuse {
				t.Errorf("noGSO b1 %v b3 %v, want %v", b1.noGSO.Load(), b3.noGSO.Load(), refuse)
			}
		})
	}
}

// Bursts through a server, as a fast flow sends them. The test holds the
// socket a burst arrives on while it is sent, so the loop finds it queued
// and merges it: the peer and the client still receive every datagram
// once, unchanged and in order, and turnd_segmented_packets_total counts
// the merged ones; with DisableGSO it counts none.
func TestFastPathBursts(t *testing.T) {
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("DisableGSO=%v", off), func(t *testing.T) {
			r := newFPRig(t, func(c *Config) { c.DisableGSO = off })
			r.bind(0x4002)
			r.roundTrip(0x4002, 1200)
			bd := r.binding(0x4002)
			if bd.raw == nil || bd.rf.listener == nil || bd.rf.listener.fast.sock.raw == nil {
				t.Fatal("the binding's sockets are not the relay loops'")
			}
			sizes := make([]int, 48)
			for i := range sizes {
				sizes[i] = 1200
			}
			sizes[20], sizes[47] = 300, 700 // a short one mid-run, and a short last one
			want := payloads(sizes...)
			srvAP := toAddrPort(r.cl.srv)

			listener := bd.rf.listener.fast.sock.raw
			listener.mu.Lock() // the loop waits for it: the burst queues up
			for _, p := range want {
				if _, err := r.client.WriteToUDPAddrPort(channelData(0x4002, p), srvAP); err != nil {
					listener.mu.Unlock()
					t.Fatal(err)
				}
			}
			listener.mu.Unlock()
			expectDatagrams(t, r.peer, net.UDPAddrFromAddrPort(r.relay), want)

			var frames [][]byte
			bd.raw.mu.Lock()
			for _, p := range want {
				if _, err := r.peer.WriteToUDPAddrPort(p, r.relay); err != nil {
					bd.raw.mu.Unlock()
					t.Fatal(err)
				}
				frames = append(frames, channelData(0x4002, p))
			}
			bd.raw.mu.Unlock()
			expectDatagrams(t, r.client, net.UDPAddrFromAddrPort(srvAP), frames)

			for _, dir := range []string{dirClientToPeer, dirPeerToClient} {
				if off {
					if got := metricLabel(t, r.srv, "turnd_segmented_packets_total", dir); got != 0 {
						t.Errorf("%s: %v datagrams merged with DisableGSO", dir, got)
					}
					continue
				}
				// At least the first run: 8 datagrams per read.
				awaitMetric(t, r.srv, "turnd_segmented_packets_total", dir, 8)
			}
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
				if c2p, _, p2c, _ := bd.counters(); c2p >= 49 && p2c >= 49 {
					return
				}
			}
			c2p, _, p2c, _ := bd.counters()
			t.Fatalf("the fast path counted %d client→peer and %d peer→client datagrams, want 49 each", c2p, p2c)
		})
	}
}
