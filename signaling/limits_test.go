package signaling

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSlowConsumerDisconnectedWithoutSlowingOthers(t *testing.T) {
	th := newTestHub(t, Config{
		SendQueueBytes: 256 << 10, HeldBytes: 1024, MessageRate: 1e6, MessageBurst: 1 << 20, ErrorBurst: 1 << 20,
		PingInterval: time.Hour, // the slow reader must not be dropped as dead first
	})
	sender, _ := th.join(t, "slow")
	fast, wf := th.join(t, "slow")
	// The slow client reads one message and then nothing: its socket and
	// then its queue on the hub fill up.
	_, ws := th.join(t, "slow", WithBuffer(1), WithDialer(smallBufferDialer()))
	cuts := cutEvents(th)

	// Every presence event settles before the flood.
	expect(t, sender, TypePeerJoined)
	expect(t, sender, TypePeerJoined)
	expect(t, fast, TypePeerJoined)

	const maxRounds = 20000 // 20000 x 4 KiB is far more than socket buffers and queue hold
	pad := strings.Repeat("x", 4<<10)

	// The fast peer reads all the time and checks that its messages keep
	// arriving, in order, up to the end marker (seq -1).
	type fastResult struct {
		got      int
		leftSeen bool
		err      error
	}
	fastDone := make(chan fastResult, 1)
	acks := make(chan int, maxRounds) // seqs the fast peer has received
	go func() {
		var r fastResult
		ctx := ctxT(t)
		for {
			m, err := fast.Recv(ctx)
			if err != nil {
				r.err = err
				fastDone <- r
				return
			}
			switch {
			case m.Type == TypePeerLeft && m.ID == ws.ID:
				r.leftSeen = true
			case m.Type == TypeSignal:
				var d struct{ Seq int }
				if err := json.Unmarshal(m.Data, &d); err != nil {
					r.err = err
				} else if d.Seq == -1 {
					fastDone <- r
					return
				} else if d.Seq != r.got && r.err == nil {
					r.err = fmt.Errorf("fast peer got seq %d, want %d", d.Seq, r.got)
				}
				r.got++
				acks <- d.Seq
			}
		}
	}()

	// The sender's inbox: wait for the slow peer to be removed.
	stop := make(chan struct{})
	var senderErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx := ctxT(t)
		stopped := false
		for {
			m, err := sender.Recv(ctx)
			if err != nil {
				if !stopped {
					senderErr = err
					close(stop)
				}
				return
			}
			if m.Type == TypePeerLeft && m.ID == ws.ID && !stopped {
				stopped = true
				close(stop)
			}
		}
	}()
	// The fast peer keeps up: the sender never gets more than a window of
	// messages ahead of it (a reader that keeps pace, not a fast machine).
	// The slow peer reads nothing and falls behind without bound.
	const window = 32
	acked := -1
	loopCtx := ctxT(t)
	sent := 0
loop:
	for i := range maxRounds {
		select {
		case <-stop:
			break loop
		default:
		}
		for acked < i-window {
			select {
			case acked = <-acks:
			case <-stop:
				break loop
			case <-loopCtx.Done():
				t.Fatalf("fast peer stuck at seq %d", acked)
			}
		}
		if err := sender.Signal(ws.ID, map[string]any{"seq": i, "pad": pad}); err != nil {
			t.Fatal(err)
		}
		if err := sender.Signal(wf.ID, map[string]int{"seq": i}); err != nil {
			t.Fatal(err)
		}
		sent++
	}
	select {
	case <-stop:
	default:
		// Out of rounds before the peer-left: the slow peer must have been
		// cut by then. Its connection ends once the write its socket
		// blocks times out (WriteTimeout), which a fast hub may not reach
		// within the rounds.
		select {
		case <-cuts:
		default:
			t.Fatalf("slow peer not cut after %d rounds", maxRounds)
		}
		select {
		case <-stop:
		case <-loopCtx.Done():
			t.Fatal("slow peer cut but still in the room")
		}
	}
	if senderErr != nil {
		t.Fatalf("sender: %v", senderErr)
	}
	if err := sender.Signal(wf.ID, map[string]int{"seq": -1}); err != nil {
		t.Fatal(err)
	}
	r := <-fastDone
	if r.err != nil {
		t.Fatalf("fast peer: %v", r.err)
	}
	// Every one of the fast peer's messages arrived, and the slow peer's
	// departure.
	if r.got != sent || !r.leftSeen {
		t.Fatalf("fast peer got %d of %d messages, saw the slow peer leave: %v", r.got, sent, r.leftSeen)
	}
	if v := th.metric(t, `signal_disconnects_total{reason="slow-consumer"}`); v != "1" {
		t.Fatalf("slow-consumer disconnects = %q", v)
	}
	t.Logf("slow peer removed after %d rounds", sent)
	sender.Close() // ends the inbox goroutine
	wg.Wait()
}

func TestDrain(t *testing.T) {
	th := newTestHub(t, Config{ResumeGrace: time.Hour})
	detached := detachEvents(th)
	a, _ := th.join(t, "drain")
	b, _ := th.join(t, "drain")
	z, wz := th.join(t, "drain")
	expect(t, a, TypePeerJoined)
	expect(t, a, TypePeerJoined)
	z.drop() // one peer waits for a resume
	awaitDetach(t, detached, wz.ID)

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := th.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, c := range []*Client{a, b} {
		if code := waitClosed(t, c); code != CloseServiceRestart {
			t.Fatalf("close code %d, want %d", code, CloseServiceRestart)
		}
	}
	resp, err := http.Get(th.srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("healthz while draining = %d", resp.StatusCode)
	}
	if _, err := Dial(ctxT(t), th.url); !isHTTPStatus(err, http.StatusServiceUnavailable) {
		t.Fatalf("dial while draining = %v, want HTTP 503", err)
	}
	for series, want := range map[string]string{"signal_peers": "0", "signal_connections": "0", "signal_rooms": "0"} {
		if got := th.metric(t, series); got != want {
			t.Errorf("%s after drain = %q, want %q", series, got, want)
		}
	}
	if err := th.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}
