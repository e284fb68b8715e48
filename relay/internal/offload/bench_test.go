//go:build linux

package offload

import (
	"fmt"
	"testing"
)

// BenchmarkProgram measures the program's own run time per packet through
// BPF_PROG_TEST_RUN with Repeat (in-kernel loop, no syscall per packet).
//
// The kernel reruns the program on the same skb, so a forwarded packet is
// rewritten in place before the next run. "forward" therefore uses a pair of
// bindings that are each other's mirror: binding A's client→peer output is
// binding B's peer→client input and the other way round, so every run
// forwards, alternating ChannelData→UDP and UDP→ChannelData. The pass paths
// do not modify the packet.
func BenchmarkProgram(b *testing.B) {
	cfg := Config{
		ListenPorts:  []uint16{3478, 40000},
		RelayPortMin: 49152, RelayPortMax: 49160,
	}
	e := loadTestEngine(b, cfg)
	for _, fam := range []string{"v4", "v6"} {
		client, relay, peer := "192.0.2.1", "192.0.2.2", "198.51.100.1"
		if fam == "v6" {
			client, relay, peer = "[2001:db8::1]", "[2001:db8::2]", "[2001:db8:1::1]"
		}
		a := Binding{Client: ap(client + ":40000"), Listener: ap(relay + ":3478"),
			Relay: ap(relay + ":49152"), Peer: ap(peer + ":49153"), Channel: 0x4000,
			ToPeer: remote, ToClient: remote}
		// B's client is A's listener, its listener A's client, its relay A's
		// peer and its peer A's relay.
		m := Binding{Client: a.Listener, Listener: a.Client, Relay: a.Peer, Peer: a.Relay,
			Channel: a.Channel, ToPeer: remote, ToClient: remote}
		for _, x := range []Binding{a, m} {
			if err := e.Upsert(x); err != nil {
				b.Fatal(err)
			}
		}
		data := payload(1200)
		paths := []struct {
			name string
			in   []byte
			want uint32
		}{
			{"forward", c2pIn(a, data, nil).bytes(), verdictRedirect},
			{"miss", c2pIn(Binding{Client: a.Client, Listener: a.Listener, Channel: 0x4fff}, data, nil).bytes(), verdictNext},
			{"stun", frame{src: a.Client, dst: a.Listener, payload: make([]byte, 20), ttl: 50}.bytes(), verdictNext},
			{"not-ours", frame{src: a.Client, dst: ap(relay + ":443"), payload: data, ttl: 50}.bytes(), verdictNext},
		}
		for _, p := range paths {
			b.Run(fmt.Sprintf("%s/%s", fam, p.name), func(b *testing.B) {
				v, per, err := e.objs.TurnOffload.Benchmark(p.in, b.N, nil)
				if err != nil {
					b.Fatal(err)
				}
				if v != p.want {
					b.Fatalf("verdict %d, want %d", int32(v), int32(p.want))
				}
				b.ReportMetric(float64(per.Nanoseconds()), "ns/packet")
				if p.name == "forward" && b.N > 1 {
					c, err := e.Counters()
					if err != nil {
						b.Fatal(err)
					}
					if c.Reasons[ForwardedToPeer] == 0 || c.Reasons[ForwardedToClient] == 0 {
						b.Fatalf("forward loop did not alternate: %v", c.Reasons)
					}
				}
			})
		}
	}
}
