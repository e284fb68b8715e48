package e2e

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pion/turn/v5"
	"github.com/pion/webrtc/v4"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
	"github.com/rtcsuite/rtcsuite/signaling"
)

// TestCluster runs the hub as three signal processes on one private
// redis-server (docs/protocol.md, "Cluster"). Each subtest uses its own
// key prefix, so they share the Redis but not their state.
func TestCluster(t *testing.T) {
	r := testenv.StartRedis(t)
	bins := cluster_build(t, "signal", "turnd")
	three := func(t *testing.T, prefix string, extra ...string) [3]*cluster_hub {
		var hs [3]*cluster_hub
		for i := range hs {
			hs[i] = cluster_startHub(t, bins["signal"], fmt.Sprintf("%s-n%d", prefix, i+1), r.URL(), prefix+":", extra...)
		}
		return hs
	}

	t.Run("presence-order-capacity", func(t *testing.T) {
		hs := three(t, "poc")
		var cc cluster_conns
		a, wa := cc.join(t, hs[0], "room")
		b, wb := cc.join(t, hs[1], "room")
		c, wc := cc.join(t, hs[2], "room")
		if !slices.Equal(wc.Peers, []string{wa.ID, wb.ID}) {
			t.Fatalf("third welcome lists %v, want [%s %s] oldest first", wc.Peers, wa.ID, wb.ID)
		}
		cluster_expect(t, a, signaling.TypePeerJoined, wb.ID)
		cluster_expect(t, a, signaling.TypePeerJoined, wc.ID)
		cluster_expect(t, b, signaling.TypePeerJoined, wc.ID)
		// Two senders on two other nodes into b: each sender's order holds.
		const n = 60 // within the default burst of 100 client messages
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); cluster_signal(t, a, wb.ID, 0, n) }()
		go func() { defer wg.Done(); cluster_signal(t, c, wb.ID, 0, n) }()
		wg.Wait()
		next := map[string]int{wa.ID: 0, wc.ID: 0}
		for range 2 * n {
			m := cluster_next(t, b)
			var seq int
			if _, err := fmt.Sscanf(string(m.Data), `{"seq":%d}`, &seq); err != nil || m.Type != signaling.TypeSignal {
				t.Fatalf("got %+v, want a signal", m)
			}
			if want, ok := next[m.From]; !ok || seq != want {
				t.Fatalf("from %s seq %d, want %d (per-sender order)", m.From, seq, want)
			}
			next[m.From]++
		}
		c.Close()
		cluster_expect(t, a, signaling.TypePeerLeft, wc.ID)
		cluster_expect(t, b, signaling.TypePeerLeft, wc.ID)

		// Capacity: 24 joins raced over the three nodes into rooms of 8.
		for round := range 3 {
			room := fmt.Sprintf("full-%d", round)
			var mu sync.Mutex
			admitted, refused := 0, 0
			var wg sync.WaitGroup
			for i := range 24 {
				cl := cc.dial(t, hs[i%3])
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := cl.Join(cluster_ctx(t), room, "")
					var e *signaling.Error
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						admitted++
					case errors.As(err, &e) && e.Code == signaling.CodeRoomFull:
						refused++
					default:
						t.Errorf("join: %v", err)
					}
				}()
			}
			wg.Wait()
			if admitted != 8 || refused != 16 {
				t.Fatalf("round %d: %d admitted and %d refused, want 8 and 16", round, admitted, refused)
			}
		}
		if v := cluster_metric(t, hs[0], "signal_redis_round_trips_total"); v == "" || v == "0" {
			t.Fatalf("signal_redis_round_trips_total = %q", v)
		}
	})

	t.Run("data-channel-across-nodes", func(t *testing.T) {
		hs := three(t, "dc")
		var cc cluster_conns
		ca, wa := cc.join(t, hs[0], "dc")
		cb, wb := cc.join(t, hs[1], "dc")
		cluster_expect(t, ca, signaling.TypePeerJoined, wb.ID)
		pa := signal_newPeer(t, "A", webrtc.Configuration{}, ca, wb.ID)
		pb := signal_newPeer(t, "B", webrtc.Configuration{}, cb, wa.ID)
		pb.offer()
		dcb := signal_awaitOpen(t, pb, pa)
		signal_awaitOpen(t, pa, pb)
		if err := dcb.SendText("across nodes"); err != nil {
			t.Fatal(err)
		}
		if got := pa.awaitMessage(t); got != "across nodes" {
			t.Fatalf("A got %q", got)
		}
	})

	t.Run("resume-on-another-node", func(t *testing.T) {
		hs := three(t, "res")
		var cc cluster_conns
		a, wa := cc.join(t, hs[0], "res")
		b, wb := cc.join(t, hs[1], "res")
		cluster_expect(t, a, signaling.TypePeerJoined, wb.ID)
		cluster_signal(t, a, wb.ID, 0, 5)
		cluster_expectSeq(t, b, wa.ID, 0, 5)
		cc.drop(b)
		// Frames written into a socket the network already lost are lost
		// on one node too; wait until b's node knows before sending.
		cluster_until(t, "b's node notices the broken connection", func() error {
			if cluster_metric(t, hs[1], `signal_disconnects_total{reason="network"}`) != "1" {
				return errNotYet
			}
			return nil
		})
		cluster_signal(t, a, wb.ID, 5, 20)
		b2 := cc.dial(t, hs[2])
		r, err := b2.Resume(cluster_ctx(t), wb.Resume)
		if err != nil || r.ID != wb.ID {
			t.Fatalf("resume on node 3: %+v, %v", r, err)
		}
		cluster_signal(t, a, wb.ID, 25, 5)
		cluster_expectSeq(t, b2, wa.ID, 5, 25)
		cluster_signal(t, b2, wa.ID, 0, 3)
		cluster_expectSeq(t, a, wb.ID, 0, 3) // no peer-left came first
	})

	t.Run("drain", func(t *testing.T) {
		hs := three(t, "drain")
		var cc cluster_conns
		a, wa := cc.join(t, hs[0], "drain")
		b, wb := cc.join(t, hs[1], "drain")
		cluster_expect(t, a, signaling.TypePeerJoined, wb.ID)
		exited := make(chan int, 1)
		go func() { exited <- hs[1].term(t) }()
		for range b.Messages() {
		}
		if code := b.CloseCode(); code != signaling.CloseServiceRestart {
			t.Fatalf("close code %d, want 1012", code)
		}
		cluster_signal(t, a, wb.ID, 0, 10)
		b2 := cc.dial(t, hs[2])
		if _, err := b2.Resume(cluster_ctx(t), wb.Resume); err != nil {
			t.Fatalf("resume after drain: %v", err)
		}
		cluster_signal(t, a, wb.ID, 10, 5)
		cluster_expectSeq(t, b2, wa.ID, 0, 15)
		if code := <-exited; code != 0 {
			t.Fatalf("drained node exited %d", code)
		}
		cluster_signal(t, b2, wa.ID, 0, 1)
		cluster_expectSeq(t, a, wb.ID, 0, 1) // a saw no peer-left
	})

	t.Run("sigkill", func(t *testing.T) {
		hs := three(t, "kill", "--resume-grace", "2s")
		var cc cluster_conns
		a, wa := cc.join(t, hs[0], "kill")
		_, wb := cc.join(t, hs[2], "kill")
		_, wc := cc.join(t, hs[2], "kill")
		cluster_expect(t, a, signaling.TypePeerJoined, wb.ID)
		cluster_expect(t, a, signaling.TypePeerJoined, wc.ID)
		hs[2].kill()
		// c resumes on a surviving node within the grace window; b does not.
		c2 := cc.dial(t, hs[1])
		cluster_until(t, "c resumes after its node died", func() error {
			_, err := c2.Resume(cluster_ctx(t), wc.Resume)
			return err
		})
		// b is reported left once the node TTL and the grace window passed;
		// c, resumed, is not.
		cluster_expect(t, a, signaling.TypePeerLeft, wb.ID)
		cluster_signal(t, a, wc.ID, 0, 1)
		for {
			m := cluster_next(t, c2)
			if m.Type == signaling.TypeSignal && m.From == wa.ID {
				break
			}
			if m.Type != signaling.TypePeerLeft || m.ID != wb.ID {
				t.Fatalf("c got %+v, want b's peer-left or a's signal", m)
			}
		}
	})

	t.Run("redis-restart", func(t *testing.T) {
		r2 := testenv.StartRedis(t)
		var hs [2]*cluster_hub
		for i := range hs {
			hs[i] = cluster_startHub(t, bins["signal"], fmt.Sprintf("rr-n%d", i+1), r2.URL(), "rr:")
		}
		var cc cluster_conns
		a, wa := cc.join(t, hs[0], "rr")
		a2, wa2 := cc.join(t, hs[0], "rr")
		b, wb := cc.join(t, hs[1], "rr")
		cluster_expect(t, a, signaling.TypePeerJoined, wa2.ID)
		cluster_expect(t, a, signaling.TypePeerJoined, wb.ID)
		cluster_expect(t, a2, signaling.TypePeerJoined, wb.ID)

		r2.Stop()
		cluster_signal(t, a, wa2.ID, 0, 3) // same node: flows
		cluster_expectSeq(t, a2, wa.ID, 0, 3)
		cluster_signal(t, a, wb.ID, 0, 1) // other node: unavailable
		if m := cluster_next(t, a); m.Code != signaling.CodeUnavailable || m.Peer != wb.ID {
			t.Fatalf("cross-node signal during the outage: %+v, want unavailable", m)
		}
		var e *signaling.Error
		if _, err := cc.dial(t, hs[1]).Join(cluster_ctx(t), "rr", ""); !errors.As(err, &e) || e.Code != signaling.CodeUnavailable {
			t.Fatalf("join during the outage: %v, want unavailable", err)
		}
		if _, err := cc.dial(t, hs[1]).Resume(cluster_ctx(t), wa.Resume); !errors.As(err, &e) || e.Code != signaling.CodeUnavailable {
			t.Fatalf("resume during the outage: %v, want unavailable", err)
		}

		r2.Start() // empty
		seq := 100
		cluster_until(t, "a cross-node signal after redis returned", func() error {
			seq++
			cluster_signal(t, a, wb.ID, seq, 1)
			if err := a.Send(signaling.ClientMessage{Type: signaling.TypePing}); err != nil {
				t.Fatal(err)
			}
			if m := cluster_next(t, a); m.Type != signaling.TypePong {
				cluster_expect(t, a, signaling.TypePong, "")
				return errors.New(m.Code)
			}
			return nil
		})
		cluster_expectSeq(t, b, wa.ID, seq, 1)
		var w signaling.ServerMessage
		cluster_until(t, "a join after redis returned", func() error {
			var err error
			w, err = cc.dial(t, hs[1]).Join(cluster_ctx(t), "rr", "")
			return err
		})
		if len(w.Peers) != 3 {
			t.Fatalf("welcome after the restart lists %v, want the 3 re-registered peers", w.Peers)
		}
	})

	t.Run("turn-fleet", func(t *testing.T) {
		const secret = "cluster-fleet-secret"
		relays := make([]*cluster_proc, 3)
		for i := range relays {
			relays[i] = cluster_start(t, fmt.Sprintf("turnd-%d", i+1), bins["turnd"], "fleet: registering in redis",
				"--listening-ip", "127.0.0.1", "--listening-port", "0", "--no-tcp", "--admin-listen", "",
				"--static-auth-secret", secret, "--allow-loopback-peers",
				"--redis", r.URL(), "--redis-prefix", "fleet:", "--fleet-id", fmt.Sprintf("relay%d", i+1), "--fleet-ttl", "1s")
		}
		urlOf := func(p *cluster_proc) string { return p.field("urls") }
		h := cluster_startHub(t, bins["signal"], "fleet-n1", r.URL(), "fleet:",
			"--turn-secret", secret, "--turn-fleet", "2", "--fleet-ttl", "1s")
		var cc cluster_conns
		picked := func() []string {
			c := cc.dial(t, h)
			w, err := c.Join(cluster_ctx(t), "fleet", "")
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			var urls []string
			for _, s := range w.ICEServers {
				urls = append(urls, s.URLs...)
			}
			return urls
		}
		want := func(ps ...*cluster_proc) []string {
			var u []string
			for _, p := range ps {
				u = append(u, strings.Fields(urlOf(p))...)
			}
			return u
		}
		// Load relay 1 with an allocation made with the hub's credential.
		var ice signaling.ICEServer
		cluster_until(t, "the relays registered", func() error {
			c := cc.dial(t, h)
			defer c.Close()
			w, err := c.Join(cluster_ctx(t), "fleet-load", "")
			if err != nil || len(w.ICEServers) == 0 {
				return fmt.Errorf("ice servers %v (%v)", w.ICEServers, err)
			}
			ice = w.ICEServers[0]
			return nil
		})
		addr := strings.TrimSuffix(strings.TrimPrefix(strings.Fields(urlOf(relays[0]))[0], "turn:"), "?transport=udp")
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		tc, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
			Username: ice.Username, Password: ice.Credential, Realm: "rtcsuite"})
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		if err := tc.Listen(); err != nil {
			t.Fatal(err)
		}
		alloc, err := tc.Allocate()
		if err != nil {
			t.Fatalf("allocate on relay 1 with the hub's fleet credential: %v", err)
		}
		defer alloc.Close()

		cluster_until(t, "the two idle relays are picked", func() error {
			if got := picked(); !slices.Equal(got, want(relays[1], relays[2])) {
				return fmt.Errorf("picked %v", got)
			}
			return nil
		})
		relays[1].kill()
		cluster_until(t, "the killed relay drops out within its TTL", func() error {
			if got := picked(); !slices.Equal(got, want(relays[2], relays[0])) {
				return fmt.Errorf("picked %v", got)
			}
			return nil
		})
	})
}
