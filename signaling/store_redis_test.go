package signaling

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtcsuite/rtcsuite/internal/rediscfg"
	"github.com/rtcsuite/rtcsuite/internal/testenv"
)

// newTestRedisStore returns a store on rdb as node id, closed at test end.
func newTestRedisStore(t testing.TB, r *testenv.Redis, node string, cfg RedisConfig) *RedisStore {
	t.Helper()
	rdb, err := rediscfg.NewClient(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Client = rdb
	cfg.NodeID = node
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 100 * time.Millisecond
		cfg.NodeTTL = 500 * time.Millisecond
	}
	s, err := NewRedisStore(ctxT(t), cfg)
	if err != nil {
		t.Fatalf("NewRedisStore: %v", err)
	}
	t.Cleanup(func() {
		s.Close()
		rdb.Close()
	})
	return s
}

// chanInbox collects frames on a channel.
type chanInbox chan []byte

func (c chanInbox) Deliver(f []byte) error {
	select {
	case c <- f:
		return nil
	default:
		return ErrUnknownPeer
	}
}

func recvFrame(t *testing.T, in chanInbox) string {
	t.Helper()
	select {
	case f := <-in:
		return string(f)
	case <-ctxT(t).Done():
		t.Fatal("no frame arrived")
		return ""
	}
}

func TestRedisStoreJoinSendLeaveAcrossNodes(t *testing.T) {
	r := testenv.StartRedis(t)
	n1 := newTestRedisStore(t, r, "n1", RedisConfig{})
	n2 := newTestRedisStore(t, r, "n2", RedisConfig{})
	a, b := make(chanInbox, 1024), make(chanInbox, 1024)
	if others, err := n1.Join("room", Member{ID: "a", Name: "Ann", Token: "a.x"}, 2, a, []byte(`{"j":"a"}`)); err != nil || len(others) != 0 {
		t.Fatalf("join a: %v %v", others, err)
	}
	others, err := n2.Join("room", Member{ID: "b", Token: "b.x"}, 2, b, []byte(`{"j":"b"}`))
	if err != nil || len(others) != 1 || others[0] != (Member{ID: "a", Name: "Ann"}) {
		t.Fatalf("join b: others %+v, %v; want Ann, no token", others, err)
	}
	if got := recvFrame(t, a); got != `{"j":"b"}` {
		t.Fatalf("a got %s, want b's announce", got)
	}
	if _, err := n1.Join("room", Member{ID: "c"}, 2, make(chanInbox, 1), nil); !errors.Is(err, ErrRoomFull) {
		t.Fatalf("third join: %v, want ErrRoomFull", err)
	}
	for i := range 200 {
		if err := n1.Send("room", "b", fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 200 {
		if got, want := recvFrame(t, b), fmt.Sprintf(`{"n":%d}`, i); got != want {
			t.Fatalf("b got %s, want %s (order across nodes)", got, want)
		}
	}
	if err := n2.Send("other", "a", []byte(`{}`)); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("send to a peer of another room: %v, want ErrUnknownPeer", err)
	}
	if !n2.Leave("room", "b", []byte(`{"left":"b"}`)) {
		t.Fatal("leave b: not a member")
	}
	if got := recvFrame(t, a); got != `{"left":"b"}` {
		t.Fatalf("a got %s, want b's leave", got)
	}
	if err := n1.Send("room", "b", []byte(`{}`)); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("send to a peer that left: %v", err)
	}
}

// Two nodes never admit more than the capacity, however joins race.
func TestRedisStoreCapacityRace(t *testing.T) {
	r := testenv.StartRedis(t)
	nodes := []*RedisStore{newTestRedisStore(t, r, "n1", RedisConfig{}), newTestRedisStore(t, r, "n2", RedisConfig{})}
	for round := range 5 {
		room := fmt.Sprintf("race%d", round)
		var wg sync.WaitGroup
		var mu sync.Mutex
		admitted, full := 0, 0
		for i := range 24 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := nodes[i%2].Join(room, Member{ID: fmt.Sprintf("%s-p%d", room, i)}, 8, make(chanInbox, 64), []byte(`{}`))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					admitted++
				case errors.Is(err, ErrRoomFull):
					full++
				default:
					t.Errorf("join: %v", err)
				}
			}()
		}
		wg.Wait()
		if admitted != 8 || full != 16 {
			t.Fatalf("round %d: %d admitted, %d refused; want 8 and 16", round, admitted, full)
		}
	}
}

// A node that stops heartbeating has its peers parked, then reported left
// once the grace window is over, by the surviving node.
func TestRedisStoreDeadNodeReaped(t *testing.T) {
	r := testenv.StartRedis(t)
	n1 := newTestRedisStore(t, r, "n1", RedisConfig{ResumeGrace: 300 * time.Millisecond})
	n2 := newTestRedisStore(t, r, "n2", RedisConfig{ResumeGrace: 300 * time.Millisecond})
	a := make(chanInbox, 16)
	if _, err := n1.Join("room", Member{ID: "a", Token: "a.x"}, 8, a, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := n2.Join("room", Member{ID: "b", Token: "b.x"}, 8, make(chanInbox, 16), []byte(`{"j":"b"}`)); err != nil {
		t.Fatal(err)
	}
	recvFrame(t, a)
	// n2 dies without a word: its heartbeat stops, nothing else.
	n2.cancel()
	n2.wg.Wait()
	if got := recvFrame(t, a); got != `{"type":"peer-left","id":"b"}` {
		t.Fatalf("a got %s, want peer-left for b", got)
	}
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	keys, err := rdb.Keys(context.Background(), "rtcsuite:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.HasSuffix(k, "sess:b") || strings.HasSuffix(k, "held:b") || strings.HasSuffix(k, "node:n2:peers") {
			t.Errorf("key %s survived b's reaping", k)
		}
		if ttl := rdb.PTTL(context.Background(), k).Val(); ttl < 0 && !strings.Contains(k, "room:") && !strings.Contains(k, "sess:") {
			t.Errorf("key %s has no TTL (%v)", k, ttl)
		}
	}
}

// Every key the store writes carries a TTL.
func TestRedisStoreKeysExpire(t *testing.T) {
	r := testenv.StartRedis(t)
	n1 := newTestRedisStore(t, r, "n1", RedisConfig{})
	n2 := newTestRedisStore(t, r, "n2", RedisConfig{})
	if _, err := n1.Join("room", Member{ID: "a", Token: "a.x"}, 8, make(chanInbox, 16), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := n2.Join("room", Member{ID: "b", Token: "b.x"}, 8, make(chanInbox, 16), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := n2.Send("room", "a", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := n2.Park("b", [][]byte{[]byte(`{"held":1}`)}); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	ctx := ctxT(t)
	keys, err := rdb.Keys(ctx, "rtcsuite:*").Result()
	if err != nil || len(keys) < 6 {
		t.Fatalf("keys %v, %v", keys, err)
	}
	for _, k := range keys {
		if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 {
			t.Errorf("key %s has no TTL (%v)", k, ttl)
		}
	}
}

// A password in the URL authenticates; a wrong one is refused at start.
func TestRedisStorePassword(t *testing.T) {
	r := testenv.StartRedis(t, "--requirepass", "s3cret")
	for _, tc := range []struct {
		url string
		ok  bool
	}{{"redis://:s3cret@" + r.Addr, true}, {"redis://:wrong@" + r.Addr, false}, {"redis://" + r.Addr, false}} {
		rdb, err := rediscfg.NewClient(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewRedisStore(ctxT(t), RedisConfig{Client: rdb, Logger: testLogger(t)})
		if (err == nil) != tc.ok {
			t.Errorf("%s: NewRedisStore error %v, want ok=%v", tc.url, err, tc.ok)
		}
		if s != nil {
			s.Close()
		}
		rdb.Close()
	}
}
