package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/rtcsuite/rtcsuite/relay"
)

// devRelay is the TURN relay -dev embeds: UDP and TCP on loopback (or
// every interface with -dev-bind-all), TURN REST credentials with a random
// secret shared with the hub only, and a peer policy that allows loopback
// and private peers, which a production relay must never do.
type devRelay struct {
	srv    *relay.Server
	secret []byte
	urls   []string // turn: URLs, then a stun: URL
	cancel context.CancelFunc
	done   chan error
	log    *slog.Logger
}

// startDevRelay binds the relay on bindIP:port (0 = any free port) and
// advertises it to browsers as host. protect are local ports (the hub's
// listeners) peers may never reach through the relay.
func startDevRelay(bindIP, host string, port int, protect []int, log *slog.Logger) (*devRelay, error) {
	secret := make([]byte, 32)
	rand.Read(secret) // never fails
	addr := net.JoinHostPort(bindIP, strconv.Itoa(port))
	srv, err := relay.New(relay.Config{
		Realm:      "rtcsuite",
		Listeners:  []relay.Listener{{Network: "udp", Addr: addr}, {Network: "tcp", Addr: addr}},
		UDPSockets: 1,
		Secrets:    [][]byte{secret},
		Peers:      relay.PeerPolicy{AllowLoopback: true, AllowPrivate: true},
		AdminPorts: protect,
		// A developer's Ctrl-C should not wait for live calls.
		DrainTimeout: time.Second,
		Logger:       log.With("component", "dev-relay"),
	})
	if err != nil {
		return nil, fmt.Errorf("embedded relay: %w", err)
	}
	urls := srv.ICEServerURLs(host)
	if ua := srv.Addr("udp"); ua != nil {
		ap, err := netip.ParseAddrPort(ua.String())
		if err == nil {
			urls = append(urls, "stun:"+net.JoinHostPort(host, strconv.Itoa(int(ap.Port()))))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &devRelay{srv: srv, secret: secret, urls: urls, cancel: cancel, done: make(chan error, 1), log: log}
	go func() { d.done <- srv.Run(ctx) }()
	return d, nil
}

// stop drains and closes the relay.
func (d *devRelay) stop() {
	d.cancel()
	if err := <-d.done; err != nil {
		d.log.Warn("embedded relay stopped", "err", err)
	}
	_ = d.srv.Close() // idempotent; Run already closed it
}

// lanIPv4 returns the first non-loopback IPv4 address of an interface that
// is up, for the URLs -dev-bind-all prints and advertises.
func lanIPv4() (netip.Addr, bool) {
	ifs, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, false
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if pn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(pn.IP); ok && ip.Unmap().Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
					return ip.Unmap(), true
				}
			}
		}
	}
	return netip.Addr{}, false
}
