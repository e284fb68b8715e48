//go:build linux

package natlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Observed is what the raw probe saw of a lab's router, from the LAN host,
// against the lab's reflector. It shares no code with natclass: the two
// cannot make one mistake together.
type Observed struct {
	Blocked       bool     // no reply at all
	NoNAT         bool     // the reflector saw the LAN address itself
	Mapping       Behavior // empty when Blocked
	Filtering     Behavior // empty when Blocked
	PortPreserved bool     // external port == local port on the mapping socket
	Hairpin       bool     // a LAN socket reached another through its external address

	Local  netip.AddrPort    // the mapping socket's local address
	Mapped [3]netip.AddrPort // as seen by PublicIP1:7000, PublicIP2:7000, PublicIP2:7001
	// HairpinSource is the source address the hairpinned packet arrived
	// from (the sender's external address on a RFC 4787 REQ-9 NAT).
	HairpinSource netip.AddrPort
}

func (o Observed) String() string {
	if o.Blocked {
		return "blocked"
	}
	return fmt.Sprintf("mapping=%s filtering=%s portPreserved=%t hairpin=%t noNAT=%t local=%s mapped=%v hairpinSource=%s",
		o.Mapping, o.Filtering, o.PortPreserved, o.Hairpin, o.NoNAT, o.Local, o.Mapped, o.HairpinSource)
}

// Matches reports how o differs from what c should produce; nil when it
// matches exactly.
func (o Observed) Matches(c Case) error {
	var errs []error
	check := func(what string, got, want any) {
		if got != want {
			errs = append(errs, fmt.Errorf("%s: observed %v, case has %v", what, got, want))
		}
	}
	check("blocked", o.Blocked, c.UDPBlocked)
	if c.UDPBlocked || o.Blocked {
		return errors.Join(errs...)
	}
	check("no NAT", o.NoNAT, c.NoNAT)
	check("filtering", o.Filtering, c.Filtering)
	if !c.NoNAT {
		check("mapping", o.Mapping, c.Mapping)
		check("port preserved", o.PortPreserved, c.PortPreserve)
		check("hairpin", o.Hairpin, c.Hairpin)
		if c.Hairpin && o.HairpinSource.Addr() != ExternalIP {
			errs = append(errs, fmt.Errorf("hairpinned packet came from %s, not the external address", o.HairpinSource))
		}
	}
	return errors.Join(errs...)
}

// Probe timing: a lab without loss answers in well under a millisecond;
// these only bound how long a negative answer takes.
const (
	probeTries   = 3
	probeWait    = 300 * time.Millisecond // per try
	straggleWait = 200 * time.Millisecond // after an ack, for a reordered via reply
)

// RawProbe measures the lab's router from the LAN host with the reflector
// (StartReflector must have run). Each test uses fresh sockets, so no test
// inherits NAT state from another.
func (l *Lab) RawProbe(ctx context.Context) (Observed, error) {
	var o Observed
	fresh := func() (*net.UDPConn, error) {
		return l.ListenUDP(LAN, netip.AddrPortFrom(LANIP, 0))
	}

	// Mapping: one socket, three destinations.
	mc, err := fresh()
	if err != nil {
		return o, err
	}
	defer mc.Close()
	o.Local = mc.LocalAddr().(*net.UDPAddr).AddrPort()
	dests := [3]netip.AddrPort{ReflectorAddr(PublicIP1, 0), ReflectorAddr(PublicIP2, 0), ReflectorAddr(PublicIP2, 1)}
	for i, d := range dests {
		r, err := ask(ctx, mc, d, netip.AddrPort{})
		if errors.Is(err, errNoAnswer) {
			if i == 0 {
				o.Blocked = true
				return o, nil
			}
			return o, fmt.Errorf("no answer from %s after %s answered", d, dests[0])
		}
		if err != nil {
			return o, err
		}
		o.Mapped[i] = r.Observed
	}
	o.NoNAT = o.Mapped[0] == o.Local
	o.PortPreserved = o.Mapped[0].Port() == o.Local.Port()
	switch {
	case o.Mapped[0] == o.Mapped[1] && o.Mapped[1] == o.Mapped[2]:
		o.Mapping = EndpointIndependent
	case o.Mapped[1] == o.Mapped[2]:
		o.Mapping = AddressDependent
	default:
		o.Mapping = AddressPortDependent
	}

	// Filtering: a fresh socket per test.
	viaOther, err := l.filterTest(ctx, fresh, ReflectorAddr(PublicIP2, 1))
	if err != nil {
		return o, err
	}
	viaPort, err := l.filterTest(ctx, fresh, ReflectorAddr(PublicIP1, 1))
	if err != nil {
		return o, err
	}
	switch {
	case viaOther && viaPort:
		o.Filtering = EndpointIndependent
	case viaPort:
		o.Filtering = AddressDependent
	case !viaOther:
		o.Filtering = AddressPortDependent
	default:
		return o, errors.New("filtering: a reply from another address passed but one from another port did not")
	}

	// Hairpinning: socket a learns its mapping, socket b sends to it.
	a, err := fresh()
	if err != nil {
		return o, err
	}
	defer a.Close()
	b, err := fresh()
	if err != nil {
		return o, err
	}
	defer b.Close()
	r, err := ask(ctx, a, ReflectorAddr(PublicIP1, 0), netip.AddrPort{})
	if err != nil {
		return o, fmt.Errorf("hairpin mapping: %w", err)
	}
	nonce := newNonce()
	hp := message{Kind: kindHairpin, Nonce: nonce}.bytes()
	got, from, err := awaitMessage(ctx, a, probeTries*probeWait, func() { _, _ = b.WriteToUDPAddrPort(hp, r.Observed) },
		func(m message) bool { return m.Kind == kindHairpin && m.Nonce == nonce })
	if err == nil {
		o.Hairpin, o.HairpinSource = got.Kind == kindHairpin, from
	} else if !errors.Is(err, errNoAnswer) {
		return o, err
	}
	return o, nil
}

// filterTest asks PublicIP1:7000 to answer from via on a fresh socket and
// reports whether that answer arrived. The reflector acks from the asked
// socket after sending the via answer, so a lost via answer is known lost
// once the ack (and a short straggler window) has passed.
func (l *Lab) filterTest(ctx context.Context, fresh func() (*net.UDPConn, error), via netip.AddrPort) (bool, error) {
	c, err := fresh()
	if err != nil {
		return false, err
	}
	defer c.Close()
	r, err := ask(ctx, c, ReflectorAddr(PublicIP1, 0), via)
	if err != nil {
		return false, fmt.Errorf("filtering via %s: %w", via, err)
	}
	return r.Kind == kindReply, nil
}

var errNoAnswer = errors.New("natlab: no answer")

func newNonce() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ask sends a request to dst (retransmitting) and returns the reply. With
// via set it returns the via reply if one arrives, otherwise the ack.
func ask(ctx context.Context, c *net.UDPConn, dst, via netip.AddrPort) (message, error) {
	nonce := newNonce()
	req := message{Kind: kindRequest, Nonce: nonce, Via: via}.bytes()
	m, _, err := awaitMessage(ctx, c, probeTries*probeWait,
		func() { _, _ = c.WriteToUDPAddrPort(req, dst) },
		func(m message) bool { return m.Nonce == nonce && (m.Kind == kindReply || m.Kind == kindAck) })
	if err != nil || m.Kind != kindAck {
		return m, err
	}
	// Acked without the via reply so far: allow a reordered one to land.
	if vm, _, err := awaitMessage(ctx, c, straggleWait, func() {},
		func(m message) bool { return m.Nonce == nonce && m.Kind == kindReply }); err == nil {
		return vm, nil
	}
	return m, nil
}

// awaitMessage calls send every probeWait until a message accepted by ok
// arrives on c or total has passed.
func awaitMessage(ctx context.Context, c *net.UDPConn, total time.Duration, send func(), ok func(message) bool) (message, netip.AddrPort, error) {
	end := time.Now().Add(total)
	if d, has := ctx.Deadline(); has && d.Before(end) {
		end = d
	}
	buf := make([]byte, 512)
	for try := 0; time.Now().Before(end); try++ {
		send()
		next := time.Now().Add(probeWait)
		if next.After(end) {
			next = end
		}
		_ = c.SetReadDeadline(next)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return message{}, netip.AddrPort{}, err
			}
			if m, err := parseMessage(buf[:n]); err == nil && ok(m) {
				_ = c.SetReadDeadline(time.Time{})
				return m, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), nil
			}
		}
		if ctx.Err() != nil {
			return message{}, netip.AddrPort{}, ctx.Err()
		}
	}
	return message{}, netip.AddrPort{}, errNoAnswer
}
