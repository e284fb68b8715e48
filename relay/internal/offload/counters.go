//go:build linux

package offload

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Reason says what the program did with a packet addressed to one of the
// relay's ports. Forwarded* count rewritten packets; every other reason is
// a packet handed on untouched (TCX_NEXT) to user space, except Error.
type Reason uint32

// Reasons, in the program's order (enum reason in offload.c).
const (
	ForwardedToPeer   Reason = Reason(offloadReasonR_FWD_C2P)        // ChannelData → UDP
	ForwardedToClient Reason = Reason(offloadReasonR_FWD_P2C)        // UDP → ChannelData
	Miss              Reason = Reason(offloadReasonR_MISS)           // no binding for the packet
	NotChannelData    Reason = Reason(offloadReasonR_NOT_CHANNEL)    // STUN or other traffic on a listener port
	BadLength         Reason = Reason(offloadReasonR_BAD_LENGTH)     // ChannelData length or IP/UDP lengths disagree
	Fragment          Reason = Reason(offloadReasonR_FRAGMENT)       // IP fragment
	IPOptions         Reason = Reason(offloadReasonR_IP_OPTIONS)     // IPv4 header with options
	IPv6Ext           Reason = Reason(offloadReasonR_IPV6EXT)        // IPv6 extension header before UDP
	GSO               Reason = Reason(offloadReasonR_GSO)            // GSO/GRO super-packet
	OverMTU           Reason = Reason(offloadReasonR_MTU)            // over the egress MTU after +4 bytes
	Expired           Reason = Reason(offloadReasonR_EXPIRED)        // channel or permission deadline passed
	Throttled         Reason = Reason(offloadReasonR_THROTTLED)      // binding throttled to user space
	Disabled          Reason = Reason(offloadReasonR_DISABLED)       // kill switch off, or permission revoked
	RelayToRelay      Reason = Reason(offloadReasonR_RELAY_TO_RELAY) // peer is one of our own addresses
	ChecksumPartial   Reason = Reason(offloadReasonR_CSUM_PARTIAL)   // unfinished checksum, destination not local
	FamilyMismatch    Reason = Reason(offloadReasonR_FAMILY)         // IPv4↔IPv6 binding
	Malformed         Reason = Reason(offloadReasonR_MALFORMED)      // e.g. zero UDP checksum over IPv6
	Error             Reason = Reason(offloadReasonR_ERROR)          // helper failed mid-rewrite: dropped
	numReasons               = int(offloadReasonR_MAX)
)

var reasonNames = [...]string{
	ForwardedToPeer: "forwarded_to_peer", ForwardedToClient: "forwarded_to_client",
	Miss: "miss", NotChannelData: "not_channel_data", BadLength: "bad_length",
	Fragment: "fragment", IPOptions: "ip_options", IPv6Ext: "ipv6_ext_header", GSO: "gso",
	OverMTU: "over_mtu", Expired: "expired", Throttled: "throttled", Disabled: "disabled",
	RelayToRelay: "relay_to_relay", ChecksumPartial: "checksum_partial",
	FamilyMismatch: "family_mismatch", Malformed: "malformed", Error: "error",
}

// String returns the reason's metric label.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint32(r))
}

// Reasons lists every reason, for metric registration.
func Reasons() []Reason {
	out := make([]Reason, numReasons)
	for i := range out {
		out[i] = Reason(i)
	}
	return out
}

// Stats are what the program forwarded for one binding, summed over CPUs.
// Bytes are application bytes (ChannelData payload, without the header or
// padding), as the user-space path counts them.
type Stats struct {
	ToPeerPackets, ToPeerBytes     uint64
	ToClientPackets, ToClientBytes uint64
}

// Counters is one reading of every counter; all values only grow while a
// binding lives.
type Counters struct {
	Bindings map[BindingID]Stats
	Reasons  [numReasons]uint64 // indexed by Reason
}

// Counters reads the per-binding and per-reason counters (one map lookup per
// binding plus one for the reasons). Poll it about once a second and feed
// metrics, per-user totals and quota decisions from the deltas.
func (e *Engine) Counters() (Counters, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return Counters{}, ErrClosed
	}
	c := Counters{Bindings: make(map[BindingID]Stats, len(e.bindings))}
	for id, n := range e.bindings {
		st, err := e.readSlot(n.toPeer.Slot)
		if err != nil {
			return c, err
		}
		c.Bindings[id] = st
	}
	var per []uint64
	for r := range numReasons {
		if err := e.objs.Reasons.Lookup(uint32(r), &per); err != nil {
			return c, fmt.Errorf("offload: read reason %v: %w", Reason(r), err)
		}
		for _, v := range per {
			c.Reasons[r] += v
		}
	}
	return c, nil
}

func (e *Engine) readSlot(slot uint32) (Stats, error) {
	var per []offloadCounters
	if err := e.objs.Stats.Lookup(slot, &per); err != nil {
		return Stats{}, fmt.Errorf("offload: read counters slot %d: %w", slot, err)
	}
	var s Stats
	for _, v := range per {
		s.ToPeerPackets += v.PktsC2p
		s.ToPeerBytes += v.BytesC2p
		s.ToClientPackets += v.PktsP2c
		s.ToClientBytes += v.BytesP2c
	}
	return s, nil
}

// zeroSlot clears a slot on every CPU before a binding takes it.
func (e *Engine) zeroSlot(slot uint32) error {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("offload: count CPUs: %w", err)
	}
	if err := e.objs.Stats.Put(slot, make([]offloadCounters, n)); err != nil {
		return fmt.Errorf("offload: zero counters slot %d: %w", slot, err)
	}
	return nil
}
