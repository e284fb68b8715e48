//go:build linux

package netlab

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// The topology's addresses: documentation ranges only (RFC 5737).
var (
	ClientAddr = netip.MustParseAddr("198.51.100.2") // in the client namespace
	ListenAddr = netip.MustParseAddr("198.51.100.1") // relay namespace, client side
	RelayAddr  = netip.MustParseAddr("203.0.113.1")  // relay namespace, peer side
	PeerAddr   = netip.MustParseAddr("203.0.113.2")  // in the peer namespace
)

// Topology is client ns — veth — relay ns — veth — peer ns. The relay
// namespace does not forward IP: the client and the peer reach each other
// only through something in the relay namespace that relays (a TURN server
// in user space, or the eBPF program's redirect).
type Topology struct {
	Client, Relay, Peer string // namespace names
	// Veth ends: ClientDev (client ns) pairs RelayClientDev (relay ns);
	// RelayPeerDev (relay ns) pairs PeerDev (peer ns).
	ClientDev, RelayClientDev, RelayPeerDev, PeerDev string
}

// NewTopology creates the three namespaces and two veth pairs, named from
// prefix (keep it short: interface names are at most 15 bytes, and the
// longest here is prefix+"rc"), with lo up everywhere and ClientAddr,
// ListenAddr/24, RelayAddr/24 and PeerAddr assigned. On error, whatever was
// created is removed again. Close removes it all.
func NewTopology(prefix string) (*Topology, error) {
	if len(prefix)+2 > 15 {
		return nil, fmt.Errorf("netlab: prefix %q too long for interface names", prefix)
	}
	t := &Topology{
		Client: prefix + "-cli", Relay: prefix + "-rly", Peer: prefix + "-peer",
		ClientDev: prefix + "c", RelayClientDev: prefix + "rc", RelayPeerDev: prefix + "rp", PeerDev: prefix + "p",
	}
	if err := t.build(); err != nil {
		return nil, errors.Join(err, t.Close())
	}
	return t, nil
}

func (t *Topology) build() error {
	for _, ns := range []string{t.Client, t.Relay, t.Peer} {
		if err := ip("netns", "add", ns); err != nil {
			return err
		}
		if err := ip("-n", ns, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	if err := ip("link", "add", t.ClientDev, "netns", t.Client, "type", "veth", "peer", "name", t.RelayClientDev, "netns", t.Relay); err != nil {
		return err
	}
	if err := ip("link", "add", t.PeerDev, "netns", t.Peer, "type", "veth", "peer", "name", t.RelayPeerDev, "netns", t.Relay); err != nil {
		return err
	}
	for _, a := range []struct {
		ns, dev string
		addr    netip.Addr
	}{
		{t.Client, t.ClientDev, ClientAddr},
		{t.Relay, t.RelayClientDev, ListenAddr},
		{t.Relay, t.RelayPeerDev, RelayAddr},
		{t.Peer, t.PeerDev, PeerAddr},
	} {
		if err := ip("-n", a.ns, "addr", "add", a.addr.String()+"/24", "dev", a.dev); err != nil {
			return err
		}
		if err := ip("-n", a.ns, "link", "set", a.dev, "up"); err != nil {
			return err
		}
	}
	out, err := Run(t.Relay, "cat", "/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) != "0" {
		return fmt.Errorf("netlab: namespace %s forwards IPv4", t.Relay)
	}
	return nil
}

// SetSendersTxChecksum sets transmit checksum offload on the client's and
// the peer's veth ends, the two senders towards the relay.
func (t *Topology) SetSendersTxChecksum(on bool) error {
	return errors.Join(SetTxChecksum(t.Client, t.ClientDev, on), SetTxChecksum(t.Peer, t.PeerDev, on))
}

// Close deletes the namespaces (and with them the veth pairs). Processes
// still running inside must be ended by their owner first.
func (t *Topology) Close() error {
	var errs []error
	for _, ns := range []string{t.Client, t.Relay, t.Peer} {
		out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput() //nolint:gosec,noctx // a namespace this topology created; ip(8) returns promptly
		if err != nil && !strings.Contains(string(out), "No such file") {
			errs = append(errs, fmt.Errorf("ip netns del %s: %w: %s", ns, err, out))
		}
	}
	return errors.Join(errs...)
}

func ip(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil { //nolint:gosec,noctx // fixed ip(8) subcommands built above
		return fmt.Errorf("ip %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}
