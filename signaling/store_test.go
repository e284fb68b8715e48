package signaling

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

type recInbox struct {
	mu     sync.Mutex
	frames []string
}

func (r *recInbox) Deliver(f []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, string(f))
	return nil
}

func TestMemoryStore(t *testing.T) {
	s := NewMemoryStore()
	var a, b, c recInbox
	if others, err := s.Join("r", Member{ID: "a"}, 2, &a, []byte("a+")); err != nil || len(others) != 0 {
		t.Fatalf("first join = %v, %v", others, err)
	}
	others, err := s.Join("r", Member{ID: "b", Name: "Bob"}, 2, &b, []byte("b+"))
	if err != nil || len(others) != 1 || others[0].ID != "a" {
		t.Fatalf("second join = %v, %v", others, err)
	}
	if _, err := s.Join("r", Member{ID: "c"}, 2, &c, []byte("c+")); !errors.Is(err, ErrRoomFull) {
		t.Fatalf("third join = %v, want ErrRoomFull", err)
	}
	if _, err := s.Join("r", Member{ID: "a"}, 9, &c, nil); err == nil {
		t.Fatal("duplicate id joined")
	}
	if err := s.Send("r", "b", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := s.Send("r", "zz", []byte("hi")); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("send to a stranger = %v", err)
	}
	if err := s.Send("other", "b", []byte("hi")); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("send across rooms = %v", err)
	}
	if s.Rooms() != 1 {
		t.Fatalf("rooms = %d", s.Rooms())
	}
	if !s.Leave("r", "a", []byte("a-")) || s.Leave("r", "a", []byte("a-")) {
		t.Fatal("Leave does not report membership")
	}
	s.Leave("r", "b", []byte("b-"))
	if s.Rooms() != 0 {
		t.Fatalf("empty room kept: %d rooms", s.Rooms())
	}
	if fmt.Sprint(a.frames) != "[b+]" || fmt.Sprint(b.frames) != "[hi a-]" || len(c.frames) != 0 {
		t.Fatalf("deliveries: a %v, b %v, c %v", a.frames, b.frames, c.frames)
	}
}

// countingStore shows the seam: the hub does all room work through Store.
type countingStore struct {
	Store
	joins, sends atomic.Int32
}

func (s *countingStore) Join(room string, m Member, capacity int, in Inbox, announce []byte) ([]Member, error) {
	s.joins.Add(1)
	return s.Store.Join(room, m, capacity, in, announce)
}

func (s *countingStore) Send(room, to string, frame []byte) error {
	s.sends.Add(1)
	return s.Store.Send(room, to, frame)
}

func TestHubUsesConfiguredStore(t *testing.T) {
	st := &countingStore{Store: NewMemoryStore()}
	th := newTestHub(t, Config{Store: st})
	a, _ := th.join(t, "seam")
	_, wb := th.join(t, "seam")
	expect(t, a, TypePeerJoined)
	if err := a.Signal(wb.ID, map[string]int{"x": 1}); err != nil {
		t.Fatal(err)
	}
	alive(t, a) // the signal has been handled
	if st.joins.Load() != 2 || st.sends.Load() != 1 {
		t.Fatalf("store saw %d joins, %d sends; want 2, 1", st.joins.Load(), st.sends.Load())
	}
}

// TestPresenceConsistentUnderConcurrency: peers joining and leaving at
// once each see every other peer exactly once (in welcome or peer-joined)
// and every departure exactly once.
func TestPresenceConsistentUnderConcurrency(t *testing.T) {
	const n = 16
	th := newTestHub(t, Config{RoomCapacity: n})
	clients := make([]*Client, n)
	ids := make([]string, n)
	known := make([]map[string]bool, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		clients[i] = th.dial(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := clients[i].Join(ctxT(t), "crowd", "")
			if err != nil {
				errs <- err
				return
			}
			ids[i] = w.ID
			known[i] = map[string]bool{w.ID: true}
			for _, p := range w.Peers {
				known[i][p] = true
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// apply reads presence events until i's view has want members.
	apply := func(i, want int) {
		for len(known[i]) != want {
			m := next(t, clients[i])
			switch m.Type {
			case TypePeerJoined:
				if known[i][m.ID] {
					t.Fatalf("client %d: peer-joined for %s, already known", i, m.ID)
				}
				known[i][m.ID] = true
			case TypePeerLeft:
				if !known[i][m.ID] {
					t.Fatalf("client %d: peer-left for unknown %s", i, m.ID)
				}
				delete(known[i], m.ID)
			}
		}
	}
	for i := range n {
		apply(i, n)
	}
	// Half leave at once.
	for i := range n / 2 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = clients[i].Leave() }()
	}
	wg.Wait()
	for i := n / 2; i < n; i++ {
		apply(i, n-n/2)
		for j := range n / 2 {
			if known[i][ids[j]] {
				t.Fatalf("client %d still knows %s", i, ids[j])
			}
		}
	}
}

func TestWSURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://h:1":        "ws://h:1/ws",
		"https://h":         "wss://h/ws",
		"ws://h:1/ws":       "ws://h:1/ws",
		"wss://h/custom/ws": "wss://h/custom/ws",
	} {
		if got := wsURL(in); got != want {
			t.Errorf("wsURL(%q) = %q, want %q", in, got, want)
		}
	}
}
