//go:build linux

package netlab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/rtcsuite/rtcsuite/internal/checksum"
)

// Capture is an AF_PACKET socket on one interface of a namespace that keeps
// every frame arriving there (outgoing frames are skipped), with the
// kernel's "checksum not ready" mark and, for a segmentation-offload frame
// (a sender's UDP_SEGMENT send, which veth passes on whole), its segment
// size. Frames wait in the socket's receive buffer (32 MiB) until Drain.
type Capture struct {
	fd int
}

// Frame is one captured Ethernet frame.
type Frame struct {
	Bytes []byte
	// NotReady is TP_STATUS_CSUMNOTREADY: a CHECKSUM_PARTIAL skb whose UDP
	// checksum field holds only the pseudo-header sum.
	NotReady bool
	// GSOSize is the UDP payload size of each datagram a UDP segmentation
	// offload frame stands for (the receiving socket cuts it into them);
	// 0 for a plain frame.
	GSOSize int
}

// vnetHdrLen is the length of the virtio_net_hdr that PACKET_VNET_HDR puts
// before every frame: flags, gso_type, hdr_len, gso_size, csum_start,
// csum_offset.
const vnetHdrLen = 10

// gsoUDPL4 is VIRTIO_NET_HDR_GSO_UDP_L4.
const gsoUDPL4 = 5

// NewCapture opens a capture on dev inside namespace ns.
func NewCapture(ns, dev string) (*Capture, error) {
	c := &Capture{fd: -1}
	err := Do(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		c.fd = fd
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index})
	})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("capture on %s in %s: %w", dev, ns, err)
	}
	return c, nil
}

// Close closes the socket.
func (c *Capture) Close() error {
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// Drain returns the frames that arrived since the last Drain, and how many
// the socket dropped (its buffer was full) in that time.
func (c *Capture) Drain() (frames []Frame, dropped int, err error) {
	buf := make([]byte, vnetHdrLen+65536)
	oob := make([]byte, 256)
	for {
		n, oobn, _, from, err := unix.Recvmsg(c.fd, buf, oob, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			break
		}
		if err != nil {
			return frames, 0, fmt.Errorf("capture: %w", err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if n < vnetHdrLen {
			return frames, 0, fmt.Errorf("capture: %d bytes, shorter than the virtio header", n)
		}
		// The header is in the host's byte order (virtio's legacy rule,
		// which packet sockets follow).
		f := Frame{Bytes: append([]byte(nil), buf[vnetHdrLen:n]...)}
		if buf[1] == gsoUDPL4 {
			f.GSOSize = int(binary.NativeEndian.Uint16(buf[4:]))
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return frames, 0, fmt.Errorf("capture: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= 4 {
				f.NotReady = binary.NativeEndian.Uint32(m.Data)&unix.TP_STATUS_CSUMNOTREADY != 0
			}
		}
		frames = append(frames, f)
	}
	st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return frames, 0, fmt.Errorf("capture statistics: %w", err)
	}
	return frames, int(st.Drops), nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

const (
	ethLen = 14
	ip4Len = 20
	ip6Len = 40
	udpLen = 8
)

// ParseUDP splits an Ethernet/IP/UDP frame (no IPv4 options, no IPv6
// extension headers) at the lengths its IP header states. ok is false for
// anything else, or when the UDP length disagrees with the IP length.
func ParseUDP(b []byte) (src, dst netip.AddrPort, udp []byte, ok bool) {
	if len(b) < ethLen+ip4Len+udpLen {
		return
	}
	var s, d netip.Addr
	switch binary.BigEndian.Uint16(b[12:]) {
	case 0x0800:
		ip := b[ethLen:]
		if ip[0] != 0x45 || ip[9] != 17 {
			return
		}
		tot := int(binary.BigEndian.Uint16(ip[2:]))
		if tot > len(ip) || tot < ip4Len+udpLen {
			return
		}
		s, d = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		udp = ip[ip4Len:tot]
	case 0x86dd:
		ip := b[ethLen:]
		if len(ip) < ip6Len+udpLen || ip[6] != 17 {
			return
		}
		pl := int(binary.BigEndian.Uint16(ip[4:]))
		if pl < udpLen || ip6Len+pl > len(ip) {
			return
		}
		s, d = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		udp = ip[ip6Len : ip6Len+pl]
	default:
		return
	}
	src = netip.AddrPortFrom(s, binary.BigEndian.Uint16(udp[0:]))
	dst = netip.AddrPortFrom(d, binary.BigEndian.Uint16(udp[2:]))
	return src, dst, udp, int(binary.BigEndian.Uint16(udp[4:])) == len(udp)
}

// ChecksumResult is what VerifyUDP found.
type ChecksumResult struct {
	Checked  int      // datagrams that matched the filter (a segmentation offload frame counts its datagrams)
	NotReady int      // of those frames, marked CHECKSUM_PARTIAL by the kernel
	Merged   int      // of those frames, segmentation offload frames
	Bad      []string // one line per frame with a wrong checksum
}

// VerifyUDP recomputes the UDP checksum of every captured datagram for which
// match returns true. A datagram the kernel marks "checksum not ready" must
// carry the folded pseudo-header sum (what the stack would complete); any
// other must carry the full checksum. A zero IPv4 checksum ("none") counts
// as bad: nothing here sends without checksums. A segmentation offload
// frame (GSOSize) is always CHECKSUM_PARTIAL: its field holds the
// pseudo-header sum over the whole frame, which the receiving socket
// adjusts for each datagram it cuts; it counts as the datagrams it stands
// for.
func VerifyUDP(frames []Frame, match func(src, dst netip.AddrPort) bool) ChecksumResult {
	var r ChecksumResult
	for _, f := range frames {
		src, dst, udp, ok := ParseUDP(f.Bytes)
		if !ok || !match(src, dst) {
			continue
		}
		if f.GSOSize > 0 {
			r.Merged++
			r.Checked += (len(udp) - udpLen + f.GSOSize - 1) / f.GSOSize
		} else {
			r.Checked++
		}
		got := binary.BigEndian.Uint16(udp[6:])
		want := checksum.UDP(src.Addr(), dst.Addr(), udp)
		if f.NotReady {
			r.NotReady++
			want = checksum.Fold(checksum.PseudoHeader(src.Addr(), dst.Addr(), len(udp)))
		}
		if got != want {
			r.Bad = append(r.Bad, fmt.Sprintf("%v→%v (%d bytes, not ready %v): UDP checksum %#04x, recomputed %#04x",
				src, dst, len(udp), f.NotReady, got, want))
		}
	}
	return r
}
