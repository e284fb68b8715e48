package natclass

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v4"
)

// schedule is a retransmission schedule: the first RTO, doubling up to
// MaxRTO, until Timeout has passed since the first transmission and at least
// MinCopies copies went out. The copy count matters on a loaded machine,
// where timers fire late and a pure time budget would send too few copies
// to get through packet loss.
type schedule struct {
	RTO, MaxRTO, Timeout time.Duration
	MinCopies            int
}

// next returns the interval after the n-th transmission (n from 1).
func (s schedule) next(n int) time.Duration {
	d := s.RTO
	for i := 1; i < n && d < s.MaxRTO; i++ {
		d *= 2
	}
	return min(d, s.MaxRTO)
}

// arrival is a STUN message one of the probe's sockets received.
type arrival struct {
	sock int
	from netip.AddrPort
	msg  *stun.Message
	at   time.Time
}

// sock is one local socket and its reader.
type sock struct {
	id    int
	conn  net.PacketConn
	local netip.AddrPort
}

// mux owns the probe's sockets and routes what they receive to the waiting
// transaction by transaction ID.
type mux struct {
	listen func(context.Context) (net.PacketConn, error)

	mu      sync.Mutex
	nextID  int
	socks   []*sock
	waiters map[[stun.TransactionIDSize]byte]chan arrival
	closed  bool
	wg      sync.WaitGroup
}

var errClosed = errors.New("natclass: probe finished")

func newMux(listen func(context.Context) (net.PacketConn, error)) *mux {
	return &mux{listen: listen, waiters: map[[stun.TransactionIDSize]byte]chan arrival{}}
}

// reserveID numbers a socket the mux does not read (the connected socket of
// a reach test), so socket numbers stay unique in the observations.
func (m *mux) reserveID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextID++
	return m.nextID
}

// open makes a fresh socket and starts its reader.
func (m *mux) open(ctx context.Context) (*sock, error) {
	c, err := m.listen(ctx)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		c.Close()
		return nil, errClosed
	}
	m.nextID++
	s := &sock{id: m.nextID, conn: c, local: addrPortOf(c.LocalAddr())}
	m.socks = append(m.socks, s)
	m.wg.Add(1)
	m.mu.Unlock()
	go m.read(s)
	return s, nil
}

func (m *mux) read(s *sock) {
	defer m.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			m.mu.Lock()
			closed := m.closed
			m.mu.Unlock()
			if closed {
				return
			}
			continue
		}
		if !stun.IsMessage(buf[:n]) {
			continue
		}
		msg := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if err := msg.Decode(); err != nil {
			continue
		}
		m.mu.Lock()
		ch := m.waiters[msg.TransactionID]
		m.mu.Unlock()
		if ch == nil {
			continue
		}
		select {
		case ch <- arrival{sock: s.id, from: addrPortOf(from), msg: msg, at: time.Now()}:
		default: // the transaction already has an answer waiting
		}
	}
}

func (m *mux) register(id [stun.TransactionIDSize]byte) chan arrival {
	ch := make(chan arrival, 1)
	m.mu.Lock()
	m.waiters[id] = ch
	m.mu.Unlock()
	return ch
}

func (m *mux) unregister(id [stun.TransactionIDSize]byte) {
	m.mu.Lock()
	delete(m.waiters, id)
	m.mu.Unlock()
}

// close closes every socket and waits for the readers.
func (m *mux) close() {
	m.mu.Lock()
	m.closed = true
	socks := m.socks
	m.mu.Unlock()
	for _, s := range socks {
		s.conn.Close()
	}
	m.wg.Wait()
}

// transact sends req from s to to, retransmitting on sched, until accept
// takes an arrival with req's transaction ID or the time is up. It fills in
// e's transmission count and, through accept, the answer.
func (m *mux) transact(ctx context.Context, s *sock, to netip.AddrPort, req *stun.Message, sched schedule, e *Exchange, accept func(arrival) bool) {
	ch := m.register(req.TransactionID)
	defer m.unregister(req.TransactionID)
	dst := net.UDPAddrFromAddrPort(to)
	start := time.Now()
	deadline := start.Add(sched.Timeout)
	if sched.MinCopies < 1 {
		sched.MinCopies = 1
	}
	timer := time.NewTimer(time.Hour) // Reset before every wait (Go 1.23 timer semantics)
	defer timer.Stop()
	var lastErr error
	for attempt := 1; ; attempt++ {
		if _, err := s.conn.WriteTo(req.Raw, dst); err != nil {
			lastErr = err
			if e.Transmissions == 0 && attempt >= 3 {
				break // the network refuses it (unroutable): not a lost packet
			}
		} else {
			e.Transmissions++
		}
		now := time.Now()
		wait := sched.next(attempt)
		final := attempt >= sched.MinCopies && !now.Add(wait).Before(deadline)
		if final {
			// The last copy still gets a short chance to be answered.
			wait = max(deadline.Sub(now), sched.RTO)
		}
		timer.Reset(wait)
	waiting:
		for {
			select {
			case <-ctx.Done():
				e.Error = "cancelled: " + ctx.Err().Error()
				return
			case a := <-ch:
				if accept(a) {
					e.ElapsedMS = float64(a.at.Sub(start).Microseconds()) / 1000
					return
				}
			case <-timer.C:
				break waiting
			}
		}
		if final {
			break
		}
	}
	// Last chance: an answer may have raced the deadline.
	select {
	case a := <-ch:
		if accept(a) {
			e.ElapsedMS = float64(a.at.Sub(start).Microseconds()) / 1000
			return
		}
	default:
	}
	if e.Transmissions == 0 && lastErr != nil {
		e.Error = "send: " + lastErr.Error()
	}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		if a == nil {
			return ap
		}
		p, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return ap
		}
		ap = p
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

func addrOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

// readAnswer fills e from a Binding answer.
func readAnswer(e *Exchange, a arrival) {
	e.Answered = true
	e.ReceivedOn = a.sock
	e.From = a.from
	msg := a.msg
	if msg.Type.Class == stun.ClassErrorResponse {
		var ec stun.ErrorCodeAttribute
		if err := ec.GetFrom(msg); err == nil {
			e.ErrorCode = int(ec.Code)
			e.Error = string(ec.Reason)
		} else {
			e.ErrorCode = 400
			e.Error = "error response without a valid ERROR-CODE"
		}
		return
	}
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(msg); err == nil {
		e.Mapped = netip.AddrPortFrom(addrOf(xa.IP), uint16(xa.Port)) // 16-bit on the wire
	} else {
		var ma stun.MappedAddress
		if err := ma.GetFrom(msg); err == nil {
			e.Mapped = netip.AddrPortFrom(addrOf(ma.IP), uint16(ma.Port)) // 16-bit on the wire
		} else {
			e.Error = "success response without XOR-MAPPED-ADDRESS"
		}
	}
	var oa stun.OtherAddress
	if err := oa.GetFrom(msg); err == nil {
		e.OtherAddress = netip.AddrPortFrom(addrOf(oa.IP), uint16(oa.Port)) // 16-bit on the wire
	}
	var ro stun.ResponseOrigin
	if err := ro.GetFrom(msg); err == nil {
		e.ResponseOrigin = netip.AddrPortFrom(addrOf(ro.IP), uint16(ro.Port)) // 16-bit on the wire
	}
}
