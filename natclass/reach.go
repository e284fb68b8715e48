package natclass

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/pion/stun/v4"
)

// reach asks server srv at to for a Binding from a socket connected to it
// and records a TestReach exchange. A connected UDP socket receives the ICMP
// port unreachable a closed port sends back (as ECONNREFUSED on the next
// read or write); the probe's unconnected sockets never do, so without this
// a closed port looks exactly like a network that drops UDP.
func (p *prober) reach(ctx context.Context, srv int, to netip.AddrPort) {
	e := Exchange{Test: TestReach, Socket: p.mux.reserveID(), Server: srv, To: to}
	idx := p.begin(e)
	defer func() { p.finish(idx, e) }()
	conn, err := p.opts.Dial(ctx, to)
	if err != nil {
		e.Error = "dial: " + err.Error()
		return
	}
	defer conn.Close()
	e.Local = addrPortOf(conn.LocalAddr())
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	req := bindingRequest(ChangeNone, 0)
	sched := p.sched
	start := time.Now()
	deadline := start.Add(sched.Timeout)
	buf := make([]byte, 1500)
	for attempt := 1; ; attempt++ {
		if _, err := conn.Write(req.Raw); err != nil {
			if refused(err) {
				e.Refused, e.Error = true, "ICMP port unreachable: nothing listens on the server port"
				return
			}
			e.Error = "send: " + err.Error()
			return
		}
		e.Transmissions++
		wait := sched.next(attempt)
		final := attempt >= sched.MinCopies && !time.Now().Add(wait).Before(deadline)
		if final {
			wait = max(time.Until(deadline), sched.RTO)
		}
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				if refused(err) {
					e.Refused, e.Error = true, "ICMP port unreachable: nothing listens on the server port"
					return
				}
				if ctx.Err() != nil {
					e.Error = "cancelled: " + ctx.Err().Error()
					return
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				e.Error = "receive: " + err.Error()
				return
			}
			msg := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if msg.Decode() != nil || msg.TransactionID != req.TransactionID || msg.Type.Method != stun.MethodBinding ||
				msg.Type.Class == stun.ClassRequest || msg.Type.Class == stun.ClassIndication {
				continue
			}
			readAnswer(&e, arrival{sock: e.Socket, from: to, msg: msg, at: time.Now()})
			e.ElapsedMS = float64(time.Since(start).Microseconds()) / 1000
			return
		}
		if final {
			return
		}
	}
}

func refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
