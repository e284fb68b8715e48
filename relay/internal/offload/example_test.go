//go:build linux

package offload_test

import (
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/rtcsuite/rtcsuite/relay/internal/offload"
)

// How a relay uses the engine: load with "auto" semantics, attach where
// packets arrive, mirror pion's channel events, poll counters.
func Example() {
	log := slog.Default()
	eng, err := offload.Load(offload.Config{
		ListenPorts:  []uint16{3478},
		RelayPortMin: 49152, RelayPortMax: 65535,
		OwnAddrs: []netip.Addr{netip.MustParseAddr("203.0.113.10")},
		Logger:   log,
	})
	switch {
	case errors.Is(err, offload.ErrPermission), errors.Is(err, offload.ErrUnsupported):
		log.Info("offload unavailable, relaying in user space", "err", err) // --offload=auto
		return
	case err != nil:
		log.Error("offload failed", "err", err) // a start-up error under --offload=tc
		return
	}
	defer eng.Close()
	if err := eng.Attach(2); err != nil { // the interface owning 203.0.113.10
		log.Error("offload attach", "err", err)
		return
	}

	// pion OnChannelCreated: the client bound channel 0x4000 to a peer.
	now := time.Now()
	b := offload.Binding{
		Client:   netip.MustParseAddrPort("198.51.100.7:50000"),
		Listener: netip.MustParseAddrPort("203.0.113.10:3478"),
		Relay:    netip.MustParseAddrPort("203.0.113.10:49200"),
		Peer:     netip.MustParseAddrPort("192.0.2.33:6000"),
		Channel:  0x4000, ChannelExpiry: now.Add(10 * time.Minute), PermissionExpiry: now.Add(5 * time.Minute),
	}
	if err := eng.Upsert(b); err != nil {
		log.Info("binding stays in user space", "err", err)
	}

	// Every second: metrics, per-user totals, quota decisions.
	if c, err := eng.Counters(); err == nil {
		st := c.Bindings[b.ID()]
		log.Info("offloaded", "to_peer_bytes", st.ToPeerBytes, "to_client_bytes", st.ToClientBytes,
			"misses", c.Reasons[offload.Miss])
	}

	// pion OnChannelDeleted: the final counters go to the user's totals.
	if st, err := eng.Remove(b.ID()); err == nil {
		log.Info("channel closed", "bytes", st.ToPeerBytes+st.ToClientBytes)
	}
}
