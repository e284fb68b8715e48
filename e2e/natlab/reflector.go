//go:build linux

package natlab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
)

// ReflectorPort is the first port of the reflector; it also listens on
// ReflectorPort+1. (3478/3479 stay free for STUN/TURN servers.)
const ReflectorPort = 7000

// The reflector's tiny text protocol, independent of STUN so that the lab
// can be checked without sharing a parser with the code under test:
//
//	request   "NLQ1 <nonce> <via>"            via: "-" or ip:port of a reflector socket
//	reply     "NLR1 <nonce> <observed> <from>" sent from via (or the receiving socket)
//	ack       "NLA1 <nonce> <observed> <from>" sent from the receiving socket after a via reply
//	hairpin   "NLH1 <nonce>"                  sent LAN to LAN, never to the reflector
//
// observed is the source address the reflector saw, from is the socket that
// sent the message.
const (
	kindRequest = "NLQ1"
	kindReply   = "NLR1"
	kindAck     = "NLA1"
	kindHairpin = "NLH1"
)

// message is one parsed reflector message.
type message struct {
	Kind     string
	Nonce    string
	Via      netip.AddrPort // requests; zero means "-"
	Observed netip.AddrPort // replies and acks
	From     netip.AddrPort // replies and acks
}

var errBadMessage = errors.New("natlab: bad reflector message")

// parseMessage parses b; anything malformed is errBadMessage.
func parseMessage(b []byte) (message, error) {
	if len(b) > 200 {
		return message{}, errBadMessage
	}
	f := strings.Fields(string(b))
	if len(f) < 2 || len(f[1]) == 0 || len(f[1]) > 32 {
		return message{}, errBadMessage
	}
	m := message{Kind: f[0], Nonce: f[1]}
	var err error
	switch {
	case m.Kind == kindRequest && len(f) == 3:
		if f[2] != "-" {
			m.Via, err = netip.ParseAddrPort(f[2])
		}
	case (m.Kind == kindReply || m.Kind == kindAck) && len(f) == 4:
		if m.Observed, err = netip.ParseAddrPort(f[2]); err == nil {
			m.From, err = netip.ParseAddrPort(f[3])
		}
	case m.Kind == kindHairpin && len(f) == 2:
	default:
		return message{}, errBadMessage
	}
	if err != nil {
		return message{}, errBadMessage
	}
	return m, nil
}

func (m message) bytes() []byte {
	switch m.Kind {
	case kindRequest:
		via := "-"
		if m.Via.IsValid() {
			via = m.Via.String()
		}
		return []byte(fmt.Sprintf("%s %s %s", m.Kind, m.Nonce, via))
	case kindHairpin:
		return []byte(fmt.Sprintf("%s %s", m.Kind, m.Nonce))
	}
	return []byte(fmt.Sprintf("%s %s %s %s", m.Kind, m.Nonce, m.Observed, m.From))
}

// Reflector answers reflector requests on every public address (PublicIP1,
// PublicIP2, PeerIP) at ReflectorPort and ReflectorPort+1. It runs inside
// this process, on sockets in the public namespace.
type Reflector struct {
	conns map[netip.AddrPort]*net.UDPConn
	wg    sync.WaitGroup
}

// StartReflector starts the lab's reflector; the lab stops it on Close.
func (l *Lab) StartReflector() (*Reflector, error) {
	r := &Reflector{conns: map[netip.AddrPort]*net.UDPConn{}}
	for _, ip := range []netip.Addr{PublicIP1, PublicIP2, PeerIP} {
		for _, port := range []uint16{ReflectorPort, ReflectorPort + 1} {
			ap := netip.AddrPortFrom(ip, port)
			c, err := l.ListenUDP(Public, ap)
			if err != nil {
				return nil, err
			}
			r.conns[ap] = c
		}
	}
	for ap, c := range r.conns {
		r.wg.Add(1)
		go r.serve(ap, c)
	}
	if err := l.onClose(func() error {
		for _, c := range r.conns {
			c.Close()
		}
		r.wg.Wait()
		return nil
	}); err != nil {
		return nil, err
	}
	return r, nil
}

// serve ends when the lab closes the socket.
func (r *Reflector) serve(local netip.AddrPort, c *net.UDPConn) {
	defer r.wg.Done()
	buf := make([]byte, 512)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m, err := parseMessage(buf[:n])
		if err != nil || m.Kind != kindRequest {
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		sender, via := c, local
		if m.Via.IsValid() {
			vc, ok := r.conns[m.Via]
			if !ok {
				continue
			}
			sender, via = vc, m.Via
		}
		reply := message{Kind: kindReply, Nonce: m.Nonce, Observed: from, From: via}
		_, _ = sender.WriteToUDPAddrPort(reply.bytes(), from)
		if m.Via.IsValid() {
			ack := message{Kind: kindAck, Nonce: m.Nonce, Observed: from, From: local}
			_, _ = c.WriteToUDPAddrPort(ack.bytes(), from)
		}
	}
}

// ReflectorAddr returns the reflector's socket on ip at ReflectorPort+portOffset.
func ReflectorAddr(ip netip.Addr, portOffset uint16) netip.AddrPort {
	return netip.AddrPortFrom(ip, ReflectorPort+portOffset)
}
