//go:build linux

package offload

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
)

// forward runs one ChannelData packet of binding b through the program and
// returns the verdict.
func forward(t *testing.T, e *Engine, b Binding, ch uint16) uint32 {
	t.Helper()
	in := b
	in.Channel = ch
	v, _, err := e.run(c2pIn(in, payload(10), nil).bytes(), nil)
	must(t, err)
	return v
}

func TestEngineLifecycle(t *testing.T) {
	e := loadTestEngine(t, testConfig)

	t.Run("rebinding a channel number removes the old key", func(t *testing.T) {
		must(t, e.Upsert(b4))
		moved := b4
		moved.Channel = 0x4010
		must(t, e.Upsert(moved))
		if v := forward(t, e, b4, 0x4000); v != verdictNext {
			t.Errorf("old channel: verdict %d, want TCX_NEXT", int32(v))
		}
		if v := forward(t, e, b4, 0x4010); v != verdictRedirect {
			t.Errorf("new channel: verdict %d, want redirect", int32(v))
		}
		st, err := e.Remove(b4.ID())
		must(t, err)
		if st.ToPeerPackets != 1 || st.ToPeerBytes != 10 {
			t.Errorf("final counters %+v, want 1 packet of 10 bytes", st)
		}
		if v := forward(t, e, b4, 0x4010); v != verdictNext {
			t.Errorf("after Remove: verdict %d, want TCX_NEXT", int32(v))
		}
	})

	t.Run("a reused slot starts at zero", func(t *testing.T) {
		e.mu.Lock()
		e.slots.init(1)
		e.mu.Unlock()
		must(t, e.Upsert(b4))
		forward(t, e, b4, b4.Channel)
		if err := e.Upsert(b4mtu); !errors.Is(err, ErrFull) {
			t.Fatalf("Upsert with no free slot = %v, want ErrFull", err)
		}
		_, err := e.Remove(b4.ID())
		must(t, err)
		must(t, e.Upsert(b4mtu))
		c, err := e.Counters()
		must(t, err)
		if st := c.Bindings[b4mtu.ID()]; st != (Stats{}) {
			t.Errorf("new binding in a reused slot starts at %+v", st)
		}
		_, err = e.Remove(b4mtu.ID())
		must(t, err)
		e.mu.Lock()
		e.slots.init(MaxBindings)
		e.mu.Unlock()
	})

	t.Run("RemoveRelay removes every binding of the allocation", func(t *testing.T) {
		second := b4
		second.Peer, second.Channel = ap("198.51.100.7:7000"), 0x4020
		for _, b := range []Binding{b4, second, b6} {
			must(t, e.Upsert(b))
		}
		n, err := e.RemoveRelay(b4.Relay)
		if n != 2 || err != nil {
			t.Fatalf("RemoveRelay = %d, %v; want 2, nil", n, err)
		}
		if ids := e.Bindings(); len(ids) != 1 || ids[0] != b6.ID() {
			t.Errorf("left %v, want only %v", ids, b6.ID())
		}
		_, err = e.Remove(b6.ID())
		must(t, err)
	})

	t.Run("concurrent writers and readers", func(t *testing.T) {
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 50 {
					b := b4
					b.Peer = netip.AddrPortFrom(b.Peer.Addr(), uint16(10000+w*100+i))
					b.Channel = uint16(0x4100 + w*100 + i)
					if err := e.Upsert(b); err != nil {
						t.Error(err)
						return
					}
					if _, err := e.Counters(); err != nil {
						t.Error(err)
					}
					if err := e.SetThrottled(b.ID(), i%2 == 0); err != nil {
						t.Error(err)
					}
					if _, err := e.Remove(b.ID()); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		if n := len(e.Bindings()); n != 0 {
			t.Errorf("%d bindings left", n)
		}
	})

	t.Run("Close is idempotent and final", func(t *testing.T) {
		must(t, e.Close())
		must(t, e.Close())
		if err := e.Upsert(b4); !errors.Is(err, ErrClosed) {
			t.Errorf("Upsert after Close = %v, want ErrClosed", err)
		}
		if _, err := e.Counters(); !errors.Is(err, ErrClosed) {
			t.Errorf("Counters after Close = %v, want ErrClosed", err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	bad := map[string]Config{
		"no listener":       {RelayPortMin: 49152, RelayPortMax: 65535},
		"listener in range": {ListenPorts: []uint16{50000}, RelayPortMin: 49152, RelayPortMax: 65535},
		"empty range":       {ListenPorts: []uint16{3478}, RelayPortMin: 60000, RelayPortMax: 50000},
		"unspecified own":   {ListenPorts: []uint16{3478}, RelayPortMin: 49152, RelayPortMax: 65535, OwnAddrs: []netip.Addr{netip.IPv4Unspecified()}},
	}
	for name, c := range bad {
		if err := c.validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: validate = %v, want ErrInvalid", name, err)
		}
	}
	if err := testConfig.validate(); err != nil {
		t.Errorf("testConfig: %v", err)
	}
}

// FuzzMetricMTU feeds arbitrary RTA_METRICS payloads to the netlink parser.
func FuzzMetricMTU(f *testing.F) {
	f.Add([]byte{8, 0, 2, 0, 0xdc, 5, 0, 0})
	f.Add([]byte{4, 0, 1, 0, 8, 0, 2, 0, 0, 5, 0, 0})
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) { metricMTU(b) })
}
