package fleet

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtcsuite/rtcsuite/internal/rediscfg"
	"github.com/rtcsuite/rtcsuite/internal/testenv"
)

func TestLeast(t *testing.T) {
	rs := []Relay{{ID: "c", Load: 1}, {ID: "b", Load: 0}, {ID: "a", Load: 5}, {ID: "d", Load: 0}}
	got := Least(rs, 2)
	if len(got) != 2 || got[0].ID != "b" || got[1].ID != "d" {
		t.Fatalf("Least = %+v, want b then d", got)
	}
	if len(Least(rs, 9)) != 4 || len(Least(nil, 2)) != 0 {
		t.Fatal("Least must cap at what exists")
	}
}

func TestRegistrationValidate(t *testing.T) {
	if err := (Registration{ID: "a:b"}).Run(context.Background()); err == nil {
		t.Fatal("a registration without client, load, URLs and with a colon in its id must be refused")
	}
}

// Relays register with their load; the selector hands out the least loaded
// healthy ones; a relay that stops heartbeating leaves within its TTL and
// one that stops cleanly leaves at once.
func TestFleetSelection(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	const ttl = 600 * time.Millisecond
	// start registers a relay; its stop func either leaves cleanly, or
	// (crash) closes the Redis client first: no heartbeat, no goodbye, like
	// SIGKILL.
	start := func(id string, load int, crash bool) (stop func()) {
		c, err := rediscfg.NewClient(r.URL())
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = Registration{Client: c, ID: id, URLs: []string{"turn:" + id + ".example:3478"}, Load: func() int { return load }, TTL: ttl, Logger: quiet}.Run(rctx) // valid: Run only fails validation
		}()
		return func() {
			if crash {
				c.Close()
			}
			rcancel()
			<-done
			c.Close()
		}
	}
	stopA := start("a", 3, false)
	defer stopA()
	stopB := start("b", 0, false)
	killC := start("c", 1, true)

	sc, err := rediscfg.NewClient(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	ids := func() []string {
		var out []string
		for _, rel := range Least(awaitHealthy(t, ctx, sc, ttl), 2) {
			out = append(out, rel.ID)
		}
		return out
	}
	await := func(want []string) {
		t.Helper()
		for !reflect.DeepEqual(ids(), want) {
			select {
			case <-ctx.Done():
				t.Fatalf("relays %v, want %v", ids(), want)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	await([]string{"b", "c"})
	sel := &Selector{Client: sc, TTL: ttl}
	if got := sel.Pick(); got != nil {
		t.Fatalf("Pick before any refresh = %+v, want nil", got)
	}
	if err := sel.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := sel.Pick(); len(got) != 2 || got[0].ID != "b" || got[0].URLs[0] != "turn:b.example:3478" {
		t.Fatalf("Pick = %+v", got)
	}
	killC()
	await([]string{"b", "a"})
	stopB()
	await([]string{"a"})
}

func awaitHealthy(t *testing.T, ctx context.Context, c *redis.Client, ttl time.Duration) []Relay {
	t.Helper()
	rs, err := Healthy(ctx, c, "", ttl)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}
