//go:build linux

package relay

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Client steering across a listener's SO_REUSEPORT sockets.
//
// The kernel's default spreads datagrams over the sockets by a hash of the
// whole 4-tuple, so two sockets of one client host land on different
// listener sockets. pion keeps EVEN-PORT reservations (RESERVATION-TOKEN)
// per listener socket: coturn's turnutils_uclient reserves a port pair on
// one client socket and claims it from another, and without steering the
// claim meets a socket that never heard of the token (508). A classic-BPF
// reuseport program (SO_ATTACH_REUSEPORT_CBPF, no privilege needed) picks
// the socket from the client's source address alone, so every socket of a
// client IP shares one listener socket and its reservations.

// skfNetOff is SKF_NET_OFF: classic BPF loads relative to the network
// header (the reuseport program otherwise sees the UDP payload).
const skfNetOff = 0xfff00000 // -0x100000 as uint32

// steerProgram returns the classic BPF program that maps a datagram's
// source IP to a socket index in [0, n). It mirrors steerIndex.
func steerProgram(n int) []unix.SockFilter {
	ins := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	const (
		ldw  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		ldb  = unix.BPF_LD | unix.BPF_B | unix.BPF_ABS
		tax  = unix.BPF_MISC | unix.BPF_TAX
		xorX = unix.BPF_ALU | unix.BPF_XOR | unix.BPF_X
		rshK = unix.BPF_ALU | unix.BPF_RSH | unix.BPF_K
	)
	prog := []unix.SockFilter{
		ins(ldb, skfNetOff), // 0: A = first byte of the IP header
		ins(rshK, 4),        // 1: A = IP version
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 4, Jt: 0, Jf: 2}, // 2: IPv4 -> 3, else 5
		ins(ldw, skfNetOff+12),            // 3: A = IPv4 source
		ins(unix.BPF_JMP|unix.BPF_JA, 10), // 4: -> 15
		ins(ldw, skfNetOff+8),             // 5: IPv6 source, folded by xor
		ins(tax, 0),
		ins(ldw, skfNetOff+12),
		ins(xorX, 0),
		ins(tax, 0),
		ins(ldw, skfNetOff+16),
		ins(xorX, 0),
		ins(tax, 0),
		ins(ldw, skfNetOff+20),
		ins(xorX, 0),
		ins(tax, 0), // 15: mix the 32 bits so neighbouring addresses spread
		ins(rshK, 16),
		ins(xorX, 0),
		ins(unix.BPF_ALU|unix.BPF_MUL|unix.BPF_K, steerMul),
		ins(tax, 0),
		ins(rshK, 16),
		ins(xorX, 0),
		ins(unix.BPF_ALU|unix.BPF_MOD|unix.BPF_K, uint32(n)),
		ins(unix.BPF_RET|unix.BPF_A, 0),
	}
	return prog
}

const steerMul = 0x45d9f3b

// steerIndex is the socket index steerProgram picks for source ip among n
// sockets (tests check the kernel agrees).
func steerIndex(ip netip.Addr, n int) int {
	var a uint32
	ip = ip.Unmap()
	if ip.Is4() {
		b := ip.As4()
		a = binary.BigEndian.Uint32(b[:])
	} else {
		b := ip.As16()
		for i := 0; i < 16; i += 4 {
			a ^= binary.BigEndian.Uint32(b[i : i+4])
		}
	}
	a ^= a >> 16
	a *= steerMul
	a ^= a >> 16
	return int(a % uint32(n))
}

// steerBySource attaches the steering program to the reuseport group of
// conns (bound in this order, which is the kernel's socket index order).
func steerBySource(conns []net.PacketConn) error {
	if len(conns) < 2 {
		return nil
	}
	uc, ok := conns[0].(*net.UDPConn)
	if !ok {
		return fmt.Errorf("steer: %T is not a UDP socket", conns[0])
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return fmt.Errorf("steer: %w", err)
	}
	prog := steerProgram(len(conns))
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog)
	}); err != nil {
		return fmt.Errorf("steer: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("steer clients by source address (SO_ATTACH_REUSEPORT_CBPF): %w", serr)
	}
	return nil
}
