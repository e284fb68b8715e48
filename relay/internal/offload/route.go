//go:build linux

package offload

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// lookupRoute asks the kernel's routing table (RTM_GETROUTE, in the calling
// thread's network namespace) how a packet to dst leaves: a local route
// means up the stack; otherwise the output interface and its MTU (the
// route's own MTU metric when it has one).
func lookupRoute(dst netip.Addr) (Route, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return Route{}, fmt.Errorf("offload: route lookup for %v: %w", dst, err)
	}
	defer unix.Close(fd)

	family, alen := unix.AF_INET6, 16
	if dst.Is4() {
		family, alen = unix.AF_INET, 4
	}
	attr := make([]byte, unix.SizeofRtAttr+alen)
	binary.NativeEndian.PutUint16(attr[0:], uint16(len(attr)))
	binary.NativeEndian.PutUint16(attr[2:], unix.RTA_DST)
	copy(attr[unix.SizeofRtAttr:], dst.AsSlice())
	msg := make([]byte, unix.SizeofNlMsghdr+unix.SizeofRtMsg+len(attr))
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], unix.RTM_GETROUTE)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(msg[8:], 1) // seq
	rt := msg[unix.SizeofNlMsghdr:]
	rt[0] = byte(family)
	rt[1] = byte(alen * 8) // dst_len
	copy(msg[unix.SizeofNlMsghdr+unix.SizeofRtMsg:], attr)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return Route{}, fmt.Errorf("offload: route lookup for %v: %w", dst, err)
	}
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return Route{}, fmt.Errorf("offload: route lookup for %v: %w", dst, err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return Route{}, fmt.Errorf("offload: route lookup for %v: %w", dst, err)
	}
	for _, m := range msgs {
		switch m.Header.Type {
		case unix.NLMSG_ERROR:
			code := int32(binary.NativeEndian.Uint32(m.Data))
			return Route{}, fmt.Errorf("offload: no route to %v: %w", dst, unix.Errno(-code))
		case unix.RTM_NEWROUTE:
			return parseRoute(dst, m)
		}
	}
	return Route{}, fmt.Errorf("offload: no route to %v", dst)
}

func parseRoute(dst netip.Addr, m syscall.NetlinkMessage) (Route, error) {
	if len(m.Data) < unix.SizeofRtMsg {
		return Route{}, fmt.Errorf("offload: short route reply for %v", dst)
	}
	rtype := m.Data[7] // rtm_type
	attrs, err := syscall.ParseNetlinkRouteAttr(&m)
	if err != nil {
		return Route{}, fmt.Errorf("offload: route reply for %v: %w", dst, err)
	}
	if rtype == unix.RTN_LOCAL {
		return Route{Local: true}, nil
	}
	if rtype != unix.RTN_UNICAST {
		return Route{}, fmt.Errorf("offload: route to %v is of type %d, not unicast", dst, rtype)
	}
	var r Route
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.RTA_OIF:
			r.Ifindex = int(binary.NativeEndian.Uint32(a.Value))
		case unix.RTA_METRICS:
			r.MTU = metricMTU(a.Value)
		}
	}
	if r.Ifindex == 0 {
		return Route{}, fmt.Errorf("offload: route to %v has no output interface", dst)
	}
	if r.MTU == 0 {
		ifi, err := net.InterfaceByIndex(r.Ifindex)
		if err != nil {
			return Route{}, fmt.Errorf("offload: route to %v: %w", dst, err)
		}
		r.MTU = ifi.MTU
	}
	return r, nil
}

// metricMTU finds RTAX_MTU in a nested RTA_METRICS attribute.
func metricMTU(b []byte) int {
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b[0:]))
		t := binary.NativeEndian.Uint16(b[2:])
		if l < unix.SizeofRtAttr || l > len(b) {
			return 0
		}
		if t == unix.RTAX_MTU && l >= unix.SizeofRtAttr+4 {
			return int(binary.NativeEndian.Uint32(b[unix.SizeofRtAttr:]))
		}
		step := (l + 3) &^ 3
		if step >= len(b) {
			return 0
		}
		b = b[step:]
	}
	return 0
}
