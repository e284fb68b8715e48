package natclass

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/pion/stun/v4"
)

// fakeServer is an in-process RFC 5780 server on 127.0.0.1 and 127.0.0.2
// that can pretend a NAT sits between it and the client: it reports mapped
// addresses from a simulated NAT (mapping behaviour) and drops answers the
// simulated NAT's filter would drop. It can also misbehave on purpose.
type fakeServer struct {
	// nat enables the simulated NAT; without it the real source is mapped.
	nat       bool
	mapping   Behavior
	filtering Behavior
	preserve  bool // keep the client's port as the public port when free
	// plain answers without OTHER-ADDRESS/RESPONSE-ORIGIN and 420s
	// CHANGE-REQUEST, like a plain STUN server.
	plain bool
	// dropFirst drops the first N copies of every transaction.
	dropFirst int
	// lossPercent drops this share of requests and of answers at random
	// (rng must be set).
	lossPercent int
	rng         *rand.Rand
	// dropAll drops every request carrying CHANGE-REQUEST (or every
	// request, with dropEverything).
	dropEverything bool
	// misbehaviour
	wrongOrigin  bool // RESPONSE-ORIGIN names the other socket
	otherSameIP  bool // OTHER-ADDRESS keeps the primary IP (coturn-style bug)
	ignoreChange bool // answer CHANGE-REQUEST from the socket asked

	addrs [2][2]netip.AddrPort
	conns [2][2]*net.UDPConn
	wg    sync.WaitGroup

	mu       sync.Mutex
	seen     map[[12]byte]int
	requests int
	// simulated NAT state: mapping key -> public port; public port -> sent-to set.
	ports map[string]uint16
	sent  map[uint16][]netip.AddrPort
	next  uint16
}

var publicIP = netip.MustParseAddr("203.0.113.7")

// start binds the four sockets (retrying until two ports are free on both
// IPs) and starts serving.
func (f *fakeServer) start(t testing.TB) *fakeServer {
	t.Helper()
	f.seen = map[[12]byte]int{}
	f.ports = map[string]uint16{}
	f.sent = map[uint16][]netip.AddrPort{}
	f.next = 20000
	ips := [2]netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if err = f.bind(ips); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("bind fake server: %v", err)
	}
	for i := range 2 {
		for j := range 2 {
			f.wg.Add(1)
			go f.serve(i, j)
		}
	}
	t.Cleanup(f.close)
	return f
}

func (f *fakeServer) bind(ips [2]netip.Addr) error {
	var ports [2]uint16
	var conns [2][2]*net.UDPConn
	cleanup := func() {
		for i := range 2 {
			for j := range 2 {
				if conns[i][j] != nil {
					conns[i][j].Close()
				}
			}
		}
	}
	for j := range 2 {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ips[0], 0)))
		if err != nil {
			cleanup()
			return err
		}
		conns[0][j] = c
		ports[j] = c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		c2, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ips[1], ports[j])))
		if err != nil {
			cleanup()
			return err
		}
		conns[1][j] = c2
	}
	for i := range 2 {
		for j := range 2 {
			f.addrs[i][j] = netip.AddrPortFrom(ips[i], ports[j])
		}
	}
	f.conns = conns
	return nil
}

func (f *fakeServer) close() {
	for i := range 2 {
		for j := range 2 {
			f.conns[i][j].Close()
		}
	}
	f.wg.Wait()
}

func (f *fakeServer) primary() string { return f.addrs[0][0].String() }

func (f *fakeServer) serve(i, j int) {
	defer f.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := f.conns[i][j].ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if m.Decode() != nil || m.Type != stun.BindingRequest {
			continue
		}
		f.handle(i, j, m, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
	}
}

// natOut records a client packet from src to server socket dst through the
// simulated NAT and returns its public address.
func (f *fakeServer) natOut(src, dst netip.AddrPort) netip.AddrPort {
	if !f.nat {
		return src
	}
	key := src.String()
	switch f.mapping {
	case AddressDependent:
		key += "|" + dst.Addr().String()
	case AddressAndPortDependent:
		key += "|" + dst.String()
	}
	p, ok := f.ports[key]
	if !ok {
		if _, used := f.sent[src.Port()]; f.preserve && !used {
			p = src.Port()
		} else {
			f.next++
			p = f.next
		}
		f.ports[key] = p
	}
	f.sent[p] = append(f.sent[p], dst)
	return netip.AddrPortFrom(publicIP, p)
}

// natIn reports whether an answer from server socket src may reach public port p.
func (f *fakeServer) natIn(p uint16, src netip.AddrPort) bool {
	if !f.nat {
		return true
	}
	for _, d := range f.sent[p] {
		switch f.filtering {
		case EndpointIndependent:
			return true
		case AddressDependent:
			if d.Addr() == src.Addr() {
				return true
			}
		default:
			if d == src {
				return true
			}
		}
	}
	return false
}

func (f *fakeServer) handle(i, j int, m *stun.Message, from netip.AddrPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	f.seen[m.TransactionID]++
	if f.seen[m.TransactionID] <= f.dropFirst || f.dropEverything || f.lose() {
		return
	}
	public := f.natOut(from, f.addrs[i][j])
	var change byte
	if v, err := m.Get(stun.AttrChangeRequest); err == nil && len(v) == 4 {
		change = v[3]
	}
	if change != 0 && f.plain {
		resp := stun.MustBuild(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingError,
			stun.CodeUnknownAttribute, stun.UnknownAttributes{stun.AttrChangeRequest}, stun.Fingerprint)
		_, _ = f.conns[i][j].WriteToUDPAddrPort(resp.Raw, from)
		return
	}
	si, sj := i, j
	if !f.ignoreChange {
		if change&0x04 != 0 {
			si ^= 1
		}
		if change&0x02 != 0 {
			sj ^= 1
		}
	}
	dst := from
	if v, err := m.Get(stun.AttrResponsePort); err == nil && len(v) == 4 && !f.plain {
		dst = netip.AddrPortFrom(from.Addr(), uint16(v[0])<<8|uint16(v[1]))
		if f.nat {
			// Deliver to the client socket behind public port dst.Port().
			found := false
			for k, p := range f.ports {
				if p == dst.Port() {
					ap := netip.MustParseAddrPort(splitKey(k))
					dst, found = ap, true
					break
				}
			}
			if !found || !f.natIn(v2port(v), f.addrs[si][sj]) {
				return
			}
		}
	} else if !f.natIn(public.Port(), f.addrs[si][sj]) {
		return
	}
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: public.Addr().AsSlice(), Port: int(public.Port())},
	}
	if !f.plain {
		other := f.addrs[i^1][j^1]
		if f.otherSameIP {
			other = netip.AddrPortFrom(f.addrs[i][j].Addr(), other.Port())
		}
		origin := f.addrs[si][sj]
		if f.wrongOrigin {
			origin = f.addrs[si^1][sj]
		}
		setters = append(setters,
			&stun.OtherAddress{IP: other.Addr().AsSlice(), Port: int(other.Port())},
			&stun.ResponseOrigin{IP: origin.Addr().AsSlice(), Port: int(origin.Port())})
	}
	setters = append(setters, stun.Fingerprint)
	resp := stun.MustBuild(setters...)
	if f.lose() {
		return
	}
	_, _ = f.conns[si][sj].WriteToUDPAddrPort(resp.Raw, dst)
}

// lose decides a random loss; f.mu is held.
func (f *fakeServer) lose() bool {
	return f.lossPercent > 0 && f.rng.IntN(100) < f.lossPercent
}

func v2port(v []byte) uint16 { return uint16(v[0])<<8 | uint16(v[1]) }

// splitKey returns the client address part of a mapping key.
func splitKey(k string) string {
	for i := range len(k) {
		if k[i] == '|' {
			return k[:i]
		}
	}
	return k
}

// loopbackListen opens fresh sockets on 127.0.0.1.
func loopbackListen(ctx context.Context) (net.PacketConn, error) {
	var lc net.ListenConfig
	return lc.ListenPacket(ctx, "udp4", "127.0.0.1:0")
}

func probeOpts(servers ...string) Options {
	return Options{
		Servers:    servers,
		Listen:     loopbackListen,
		LocalAddrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
	}
}

func (f *fakeServer) String() string {
	return fmt.Sprintf("fake(nat=%v %s/%s plain=%v)", f.nat, f.mapping, f.filtering, f.plain)
}
