package signaling

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
)

// newClusterHub runs a hub node on a RedisStore of r.
func newClusterHub(t *testing.T, r *testenv.Redis, node string, cfg Config) *testHub {
	t.Helper()
	if cfg.ResumeGrace == 0 {
		cfg.ResumeGrace = time.Hour
	}
	st := newTestRedisStore(t, r, node, RedisConfig{ResumeGrace: cfg.ResumeGrace})
	cfg.Store = st
	return newTestHub(t, cfg) // cleanups run in reverse: hub shutdown before store close
}

func signalSeq(t *testing.T, c *Client, to string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := c.Signal(to, map[string]int{"seq": i}); err != nil {
			t.Fatal(err)
		}
	}
}

func expectSeq(t *testing.T, c *Client, from, n int, sender string) {
	t.Helper()
	for i := from; i < from+n; i++ {
		m := next(t, c)
		if got := seqOf(t, m); got != i || m.From != sender {
			t.Fatalf("got seq %d from %s, want %d from %s", got, m.From, i, sender)
		}
	}
}

func TestClusterHubPresenceAndSignals(t *testing.T) {
	r := testenv.StartRedis(t)
	h1 := newClusterHub(t, r, "h1", Config{})
	h2 := newClusterHub(t, r, "h2", Config{})
	a, wa := h1.join(t, "room")
	b, wb := h2.join(t, "room")
	if len(wb.Peers) != 1 || wb.Peers[0] != wa.ID || !wb.Polite {
		t.Fatalf("b's welcome %+v, want peers [%s] and polite", wb, wa.ID)
	}
	if m := expect(t, a, TypePeerJoined); m.ID != wb.ID {
		t.Fatalf("peer-joined %+v, want %s", m, wb.ID)
	}
	signalSeq(t, a, wb.ID, 0, 50)
	signalSeq(t, b, wa.ID, 0, 50)
	expectSeq(t, b, 0, 50, wa.ID)
	expectSeq(t, a, 0, 50, wb.ID)
	if h2.metric(t, "signal_redis_round_trips_total") == "" || h2.metric(t, "signal_redis_errors_total") != "0" {
		t.Fatalf("redis metrics missing: round trips %q errors %q", h2.metric(t, "signal_redis_round_trips_total"), h2.metric(t, "signal_redis_errors_total"))
	}
	b.Close()
	if m := expect(t, a, TypePeerLeft); m.ID != wb.ID {
		t.Fatalf("peer-left %+v, want %s", m, wb.ID)
	}
}

// A peer whose connection broke resumes on another node and gets what was
// held for it, in order, before what follows.
func TestClusterHubResumeOnAnotherNode(t *testing.T) {
	r := testenv.StartRedis(t)
	h1 := newClusterHub(t, r, "h1", Config{})
	h2 := newClusterHub(t, r, "h2", Config{})
	h3 := newClusterHub(t, r, "h3", Config{})
	detached := detachEvents(h2)
	a, wa := h1.join(t, "room")
	b, wb := h2.join(t, "room")
	expect(t, a, TypePeerJoined)
	b.drop()
	awaitDetach(t, detached, wb.ID)
	signalSeq(t, a, wb.ID, 0, 20)

	b2 := h3.dial(t)
	if _, err := b2.Resume(ctxT(t), wb.Resume); err != nil {
		t.Fatalf("resume on h3: %v", err)
	}
	signalSeq(t, a, wb.ID, 20, 20)
	expectSeq(t, b2, 0, 40, wa.ID)
	// The room saw no leave, and b is reachable through h3 now.
	signalSeq(t, b2, wa.ID, 0, 5)
	expectSeq(t, a, 0, 5, wb.ID)
	if h2.sessionCount() != 0 {
		t.Fatalf("h2 still holds %d sessions after the handover", h2.sessionCount())
	}
}

// A draining node closes with 1012 and loses no session: its peers resume
// on another node with everything sent to them meanwhile.
func TestClusterHubDrainHandsOver(t *testing.T) {
	r := testenv.StartRedis(t)
	h1 := newClusterHub(t, r, "h1", Config{})
	h2 := newClusterHub(t, r, "h2", Config{})
	a, wa := h1.join(t, "room")
	b, wb := h2.join(t, "room")
	expect(t, a, TypePeerJoined)
	signalSeq(t, a, wb.ID, 0, 10)
	expectSeq(t, b, 0, 10, wa.ID)

	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		drained <- h2.Shutdown(ctx)
	}()
	if code := waitClosed(t, b); code != CloseServiceRestart {
		t.Fatalf("close code %d, want 1012", code)
	}
	signalSeq(t, a, wb.ID, 10, 10)
	b2 := h1.dial(t)
	if _, err := b2.Resume(ctxT(t), wb.Resume); err != nil {
		t.Fatalf("resume after drain: %v", err)
	}
	signalSeq(t, a, wb.ID, 20, 5)
	expectSeq(t, b2, 10, 15, wa.ID)
	if err := <-drained; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	alive(t, a)
}

// A drained session nobody claims in time is parked in Redis, and a later
// resume on another node still finds it with its held frames.
func TestClusterHubDrainParks(t *testing.T) {
	r := testenv.StartRedis(t)
	h1 := newClusterHub(t, r, "h1", Config{})
	h2 := newClusterHub(t, r, "h2", Config{})
	a, wa := h1.join(t, "room")
	b, wb := h2.join(t, "room")
	expect(t, a, TypePeerJoined)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	go func() { <-b.Done() }()
	signalSeq(t, a, wb.ID, 0, 3)
	expectSeq(t, b, 0, 3, wa.ID)
	h2.Shutdown(ctx) //nolint:errcheck // the timeout is the point: nobody resumed
	signalSeq(t, a, wb.ID, 3, 3)
	b2 := h1.dial(t)
	if _, err := b2.Resume(ctxT(t), wb.Resume); err != nil {
		t.Fatalf("resume of a parked session: %v", err)
	}
	expectSeq(t, b2, 3, 3, wa.ID)
}

// While Redis is down: joins and resumes get "unavailable", signals on one
// node flow, signals to another node get "unavailable"; when Redis returns
// (empty) the nodes re-register their sessions and everything works.
func TestClusterHubRedisOutage(t *testing.T) {
	r := testenv.StartRedis(t)
	h1 := newClusterHub(t, r, "h1", Config{})
	h2 := newClusterHub(t, r, "h2", Config{})
	a, wa := h1.join(t, "room")
	a2, wa2 := h1.join(t, "room")
	b, wb := h2.join(t, "room")
	expect(t, a, TypePeerJoined)
	expect(t, a, TypePeerJoined)
	expect(t, a2, TypePeerJoined)

	r.Stop()
	signalSeq(t, a, wa2.ID, 0, 5)
	expectSeq(t, a2, 0, 5, wa.ID)
	if err := a.Signal(wb.ID, map[string]int{"seq": 0}); err != nil {
		t.Fatal(err)
	}
	if m := expect(t, a, TypeError, CodeUnavailable); m.Peer != wb.ID {
		t.Fatalf("unavailable names peer %q, want %s", m.Peer, wb.ID)
	}
	c := h2.dial(t)
	var e *Error
	if _, err := c.Join(ctxT(t), "room", ""); !errors.As(err, &e) || e.Code != CodeUnavailable {
		t.Fatalf("join during the outage: %v, want unavailable", err)
	}
	if _, err := c.Resume(ctxT(t), wa.Resume); !errors.As(err, &e) || e.Code != CodeUnavailable {
		t.Fatalf("resume of another node's session during the outage: %v, want unavailable", err)
	}

	r.Start() // empty: no persistence
	// The nodes re-register by themselves; each direction is retried until
	// it gets through.
	signalUntilDelivered(t, a, b, wb.ID, 1)
	signalUntilDelivered(t, b, a, wa.ID, 100)
	// Presence survived: a new join sees all three.
	c2 := h2.dial(t)
	wc, err := c2.Join(ctxT(t), "room", "")
	for errors.As(err, &e) && e.Code == CodeUnavailable { // until all nodes re-registered
		backoff(t)
		wc, err = c2.Join(ctxT(t), "room", "")
	}
	if err != nil || len(wc.Peers) != 3 {
		t.Fatalf("welcome after the outage lists %v (%v), want the three re-registered peers", wc.Peers, err)
	}
}

// backoff waits before a retry, as a client would after "unavailable".
func backoff(t *testing.T) {
	select {
	case <-time.After(50 * time.Millisecond):
	case <-ctxT(t).Done():
		t.Fatal("the cluster never became available again")
	}
}

// A resume on another node while the old connection still looks alive
// (the client noticed the break first): the old connection gets 4000 and
// delivery continues on the new one, in order.
func TestClusterHubResumeReplacesLiveConnection(t *testing.T) {
	r := testenv.StartRedis(t)
	h1 := newClusterHub(t, r, "h1", Config{})
	h2 := newClusterHub(t, r, "h2", Config{})
	a, wa := h1.join(t, "room")
	b, wb := h1.join(t, "room")
	expect(t, a, TypePeerJoined)
	signalSeq(t, a, wb.ID, 0, 10) // b reads none of them
	b2 := h2.dial(t)
	if _, err := b2.Resume(ctxT(t), wb.Resume); err != nil {
		t.Fatalf("resume on h2: %v", err)
	}
	if code := waitClosed(t, b); code != CloseReplaced {
		t.Fatalf("old connection closed with %d, want 4000", code)
	}
	signalSeq(t, a, wb.ID, 10, 5)
	// The first ten went out on the old connection (its socket buffer took
	// them); anything it had not written would come first here.
	first := seqOf(t, next(t, b2))
	expectSeq(t, b2, first+1, 14-first, wa.ID)
}

// A peer that leaves while Redis is down is reported at once to the peers
// on its node, and to the others (once) when Redis returns.
func TestClusterHubLeaveDuringOutage(t *testing.T) {
	r := testenv.StartRedis(t)
	h1 := newClusterHub(t, r, "h1", Config{})
	h2 := newClusterHub(t, r, "h2", Config{})
	a, wa := h1.join(t, "room")
	a2, wa2 := h1.join(t, "room")
	b, _ := h2.join(t, "room")
	expect(t, a, TypePeerJoined)
	expect(t, a, TypePeerJoined)
	expect(t, a2, TypePeerJoined)

	r.Stop()
	a2.Close()
	if m := expect(t, a, TypePeerLeft); m.ID != wa2.ID {
		t.Fatalf("a got peer-left for %s, want %s", m.ID, wa2.ID)
	}
	r.Start()
	if m := expect(t, b, TypePeerLeft); m.ID != wa2.ID {
		t.Fatalf("b got peer-left for %s after redis returned, want %s", m.ID, wa2.ID)
	}
	// a got no second peer-left: the next thing it sees is b's signal.
	signalUntilDelivered(t, b, a, wa.ID, 1)
}

// signalUntilDelivered signals from -> to (id toID) with increasing seqs
// until one is not refused as "unavailable" (a ping after each attempt
// tells), and checks that exactly that one arrived.
func signalUntilDelivered(t *testing.T, from, to *Client, toID string, seq int) {
	t.Helper()
	for ; ; seq++ {
		if err := from.Signal(toID, map[string]int{"seq": seq}); err != nil {
			t.Fatal(err)
		}
		if err := from.Send(ClientMessage{Type: TypePing}); err != nil {
			t.Fatal(err)
		}
		m := next(t, from)
		if m.Type == TypePong {
			if got := seqOf(t, next(t, to)); got != seq {
				t.Fatalf("got seq %d, want %d (refused attempts must not arrive)", got, seq)
			}
			return
		}
		if m.Type != TypeError || m.Code != CodeUnavailable {
			t.Fatalf("got %+v while waiting for the cluster", m)
		}
		expect(t, from, TypePong)
		backoff(t)
	}
}
