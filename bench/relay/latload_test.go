//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// cmsg encodes one control message as the kernel lays it out on 64-bit
// Linux: length, level, type, data, padding to the next alignment.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	binary.NativeEndian.PutUint64(b[0:], uint64(unix.CmsgLen(len(data))))
	binary.NativeEndian.PutUint32(b[8:], uint32(level))
	binary.NativeEndian.PutUint32(b[12:], uint32(typ))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func timespecBytes(sec, nsec int64) []byte {
	b := make([]byte, 16)
	binary.NativeEndian.PutUint64(b[0:], uint64(sec))
	binary.NativeEndian.PutUint64(b[8:], uint64(nsec))
	return b
}

func TestRxTimestamp(t *testing.T) {
	if unix.SizeofPtr != 8 {
		t.Skip("rxTimestamp decodes the 64-bit layout only")
	}
	ts := cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, timespecBytes(1_800_000_000, 123_456_789))
	const want = 1_800_000_000*1e9 + 123_456_789
	tos := cmsg(unix.SOL_IP, unix.IP_TOS, []byte{0x10})
	truncated := cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, timespecBytes(1, 2))
	binary.NativeEndian.PutUint64(truncated[0:], uint64(len(truncated)+8)) // claims more than there is
	for _, c := range []struct {
		name string
		ctrl []byte
		want int64
		ok   bool
	}{
		{"timestamp alone", ts, want, true},
		{"after another message", append(append([]byte{}, tos...), ts...), want, true},
		{"before another message", append(append([]byte{}, ts...), tos...), want, true},
		{"empty", nil, 0, false},
		{"shorter than a header", ts[:10], 0, false},
		{"other message only", tos, 0, false},
		{"wrong level", cmsg(unix.SOL_IP, unix.SCM_TIMESTAMPNS, timespecBytes(1, 2)), 0, false},
		{"wrong type", cmsg(unix.SOL_SOCKET, unix.SO_TIMESTAMP, timespecBytes(1, 2)), 0, false},
		{"short data", cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, []byte{1, 2, 3, 4, 5, 6, 7, 8}), 0, false},
		{"length beyond the buffer", truncated, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := rxTimestamp(c.ctrl)
			if got != c.want || ok != c.ok {
				t.Fatalf("rxTimestamp = %d, %v; want %d, %v", got, ok, c.want, c.ok)
			}
			// The allocating parser of x/sys agrees wherever it parses.
			if msgs, err := unix.ParseSocketControlMessage(c.ctrl); err == nil {
				var ref int64
				var refOK bool
				for _, m := range msgs {
					if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
						ref = int64(binary.NativeEndian.Uint64(m.Data[0:])*1e9 + binary.NativeEndian.Uint64(m.Data[8:]))
						refOK = true
						break
					}
				}
				if ref != got || refOK != ok {
					t.Fatalf("x/sys reads %d, %v; rxTimestamp %d, %v", ref, refOK, got, ok)
				}
			}
		})
	}
	both := append(append([]byte{}, tos...), ts...)
	if a := testing.AllocsPerRun(100, func() { _, _ = rxTimestamp(both) }); a != 0 {
		t.Errorf("rxTimestamp allocates %v times per call, want 0", a)
	}
}

func FuzzRxTimestamp(f *testing.F) {
	f.Add(cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, timespecBytes(1, 2)))
	f.Add(append(cmsg(unix.SOL_IP, unix.IP_TOS, []byte{1}), cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, timespecBytes(3, 4))...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := rxTimestamp(b) // must not panic on any input
		if !ok && got != 0 {
			t.Fatalf("no timestamp but value %d", got)
		}
	})
}

func TestEchoHoldAndRTT(t *testing.T) {
	for _, c := range []struct {
		name                 string
		sent, echoRx, echoTx int64
		echoStamped          bool
		clientRx             int64
		clientStamped        bool
		want                 int64
		ok                   bool
	}{
		// Sent at 1,000; at the echo's socket at 1,060; sent back at
		// 1,090 (held 30); at the client's socket at 1,150: 150 − 30.
		{"both stamped", 1000, 1060, 1090, true, 1150, true, 120, true},
		{"no hold", 1000, 1060, 1060, true, 1150, true, 150, true},
		{"echo unstamped", 1000, 0, 1090, false, 1150, true, 0, false},
		{"client unstamped", 1000, 1060, 1090, true, 0, false, 0, false},
		{"echo clock before its stamp", 1000, 1060, 1050, true, 1150, true, 0, false},
		// A clock step between send and receive: negative, kept for the
		// histogram to count.
		{"clock step", 1000, 900, 910, true, 960, true, -50, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			hold := echoHold(c.echoRx, c.echoStamped, c.echoTx)
			got, ok := latRTT(c.sent, c.clientRx, c.clientStamped, hold)
			if got != c.want || ok != c.ok {
				t.Fatalf("RTT = %d, %v; want %d, %v (hold %d)", got, ok, c.want, c.ok, hold)
			}
		})
	}
}

// The two ways of a round trip add up to its RTT, and an echo without a
// receive stamp splits nothing.
func TestLatWays(t *testing.T) {
	for _, tc := range []struct {
		sent, echoRx int64
		hold         uint64
		clientRx     int64
		out, back    int64
		ok           bool
	}{
		{sent: 1_000, echoRx: 1_060, hold: 25, clientRx: 1_120, out: 60, back: 35, ok: true},
		{sent: 1_000, echoRx: 1_000, hold: 0, clientRx: 1_000, out: 0, back: 0, ok: true},
		{sent: 1_000, echoRx: 0, hold: 25, clientRx: 1_120},
		{sent: 1_000, echoRx: 1_060, hold: holdUnknown, clientRx: 1_120},
	} {
		out, back, ok := latWays(tc.sent, tc.echoRx, tc.hold, tc.clientRx)
		if out != tc.out || back != tc.back || ok != tc.ok {
			t.Errorf("latWays(%d, %d, %d, %d) = %d, %d, %v; want %d, %d, %v", tc.sent, tc.echoRx, tc.hold, tc.clientRx, out, back, ok, tc.out, tc.back, tc.ok)
		}
		if rtt, rok := latRTT(tc.sent, tc.clientRx, true, tc.hold); ok && (!rok || out+back != rtt) {
			t.Errorf("out %d + back %d != RTT %d", out, back, rtt)
		}
	}
}

func TestLatHistQuantile(t *testing.T) {
	var h latHist
	for i := 0; i < 900; i++ {
		h.add(150_400) // 150.4 µs: the bucket 150–151 µs
	}
	for i := 0; i < 90; i++ {
		h.add(2_000_000) // 2 ms exactly: the bucket 2000–2001 µs
	}
	for i := 0; i < 9; i++ {
		h.add(12_345_000) // 12.345 ms: the coarse bucket 12.3–12.4 ms
	}
	var o latHist
	o.add(5_000_000_000) // 5 s: beyond the range, the last bucket
	h.merge(&o)
	if h.n != 1000 {
		t.Fatalf("n = %d, want 1000", h.n)
	}
	for _, c := range []struct {
		q    float64
		want float64 // µs
	}{
		{0.5, 151},
		{0.9, 151},    // the 900th value
		{0.901, 2001}, // the 901st
		{0.99, 2001},
		{0.991, 12400},
		{0.999, 12400},
	} {
		if got := h.quantile(c.q); got != c.want {
			t.Errorf("quantile(%v) = %v µs, want %v", c.q, got, c.want)
		}
	}
	if got, want := h.quantile(1), 1_000_000.0; got != want {
		t.Errorf("quantile(1) = %v µs, want the last bucket's edge %v", got, want)
	}
	if got := h.maxUS(); got != 5_000_000 {
		t.Errorf("max = %v µs, want 5,000,000", got)
	}

	// The quantile never exceeds the exact maximum.
	var small latHist
	small.add(150_400)
	if got := small.quantile(0.99); got != 150.4 {
		t.Errorf("one value of 150.4 µs: p99 = %v, want 150.4 (capped at the maximum)", got)
	}
	var neg latHist
	neg.add(-20)
	neg.add(30)
	if neg.neg != 1 || neg.quantile(0.5) != 0.03 {
		t.Errorf("negative values: neg %d, p50 %v µs; want 1 and 0.03 (the first bucket, capped at the maximum)", neg.neg, neg.quantile(0.5))
	}
	var empty latHist
	if got := empty.quantile(0.5); got != 0 {
		t.Errorf("empty histogram: p50 = %v, want 0", got)
	}
	// Bucket edges on both sides of the fine/coarse boundary.
	for _, c := range []struct {
		d    int64
		edge int64
	}{{0, 1_000}, {999, 1_000}, {1_000, 2_000}, {9_999_999, 10_000_000}, {10_000_000, 10_100_000}, {999_999_999, 1_000_000_000}, {1 << 50, 1_000_000_000}} {
		if got := latUpper(latBucket(c.d)); got != c.edge {
			t.Errorf("%d ns: bucket edge %d, want %d", c.d, got, c.edge)
		}
	}
}

func TestLatOwed(t *testing.T) {
	// 4 flows at 50/s: one interval is 20 ms; flow i starts at i·5 ms.
	for _, c := range []struct {
		el   time.Duration
		flow int
		want uint64
	}{
		{0, 0, 1},
		{0, 1, 0},
		{4 * time.Millisecond, 1, 0},
		{6 * time.Millisecond, 1, 1},
		{16 * time.Millisecond, 3, 1},
		{19 * time.Millisecond, 0, 1},
		{21 * time.Millisecond, 0, 2},
		{time.Second, 0, 51},
		{time.Second, 3, 50},
	} {
		if got := latOwed(c.el, 50, c.flow, 4); got != c.want {
			t.Errorf("latOwed(%v, flow %d) = %d, want %d", c.el, c.flow, got, c.want)
		}
	}
}

func TestParseLatLoads(t *testing.T) {
	got, err := parseLatLoads("10, 500,16@60000", 50)
	if err != nil {
		t.Fatal(err)
	}
	want := []latLoad{{"lat-10", 10, 500}, {"lat-500", 500, 25000}, {"lat-16@60000", 16, 60000}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("load %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"", "x", "0", "10@", "10@-5", "-3"} {
		if _, err := parseLatLoads(bad, 50); err == nil {
			t.Errorf("parseLatLoads(%q): no error", bad)
		}
	}
}

// TestStampedEcho sends a latency frame through the stamped echo peer on
// loopback from a socket with receive stamps, as the generator's flows do
// (without a relay between them), and checks the stamps and the hold
// against clock reads taken around them: orderings, not durations.
func TestStampedEcho(t *testing.T) {
	// The relay's echo sees the payload; the direct baseline's sees the
	// whole ChannelData frame, header first.
	t.Run("payload", func(t *testing.T) { testStampedEcho(t, 0) })
	t.Run("channel data frame", func(t *testing.T) { testStampedEcho(t, satHeader) })
}

func testStampedEcho(t *testing.T, at int) {
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	echoAddr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))
	echo, err := startEchoPeerAt(echoAddr, true, at+latOffHold)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(echo.close)
	fd, err := udpSocket(netip.AddrPortFrom(echoAddr.Addr(), 0), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := enableRxTimestamps(fd); err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: echoAddr.Addr().As4(), Port: port}); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, at+latStamp+8)
	before := time.Now().UnixNano()
	binary.BigEndian.PutUint64(payload[at+latOffSent:], uint64(before))
	binary.BigEndian.PutUint64(payload[at+latOffHold:], holdUnknown)
	if _, err := unix.Write(fd, payload); err != nil {
		t.Fatal(err)
	}
	rx := newRing(2048, false).withControl()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if _, err := unix.Poll(pfd, 10_000); err != nil {
		t.Fatal(err)
	}
	rx.rearm()
	k, err := recvmmsg(fd, rx.msgs, unix.MSG_DONTWAIT)
	after := time.Now().UnixNano()
	if err != nil || k != 1 {
		if err == nil {
			err = errors.New("no datagram")
		}
		t.Fatalf("no echo within 10 s: %v", err)
	}
	b := rx.bufs[0][:rx.msgs[0].n]
	if len(b) != len(payload) {
		t.Fatalf("echo of %d bytes, sent %d", len(b), len(payload))
	}
	crx, ok := rx.stamp(0)
	if !ok {
		t.Fatal("no kernel receive stamp on the client socket")
	}
	if crx < before || crx > after {
		t.Errorf("client stamp %d outside [%d, %d]", crx, before, after)
	}
	if got := binary.BigEndian.Uint64(b[at+latOffSent:]); got != uint64(before) {
		t.Errorf("the echo changed the send time: %d, sent %d", got, before)
	}
	hold := binary.BigEndian.Uint64(b[at+latOffHold:])
	if hold == holdUnknown {
		t.Fatal("the echo wrote no hold time")
	}
	rtt, ok := latRTT(before, crx, true, hold)
	if !ok || rtt < 0 || rtt > crx-before {
		t.Errorf("RTT %d (ok %v), hold %d: want 0 ≤ RTT ≤ %d", rtt, ok, hold, crx-before)
	}
	if erx := int64(binary.BigEndian.Uint64(b[at+latOffEchoRx:])); erx < before || erx > crx {
		t.Errorf("echo receive stamp %d outside [send %d, client stamp %d]", erx, before, crx)
	}
}

// turnd-alt runs the -alt-turnd binary with the alt flags: an old/new A/B
// in one run depends on it. (The latency mode once built its satTurnd
// without the alt fields, so its A/Bs ran one build twice; main.go now
// builds one satTurnd for both generator modes.)
func TestSatEnvAltTurnd(t *testing.T) {
	old := *satServers
	*satServers = "turnd,turnd-alt,coturn"
	t.Cleanup(func() { *satServers = old })
	td := satTurnd{bin: "/new/turnd", altBin: "/old/turnd", args: []string{"--new"}, altArgs: []string{"--old"}}
	env, err := newSatEnv("loopback", td, "turnserver", "turnutils_peer")
	if err != nil {
		t.Fatal(err)
	}
	defer env.close()
	want := map[string]struct{ bin, flag string }{
		"turnd":     {"/new/turnd", "--new"},
		"turnd-alt": {"/old/turnd", "--old"},
	}
	seen := 0
	for _, k := range env.kinds {
		w, ok := want[k.name]
		if !ok {
			continue
		}
		seen++
		cmd := k.cmd(3478)
		if cmd.Path != w.bin || !slices.Contains(cmd.Args, w.flag) {
			t.Errorf("%s runs %s %v, want %s with %s", k.name, cmd.Path, cmd.Args, w.bin, w.flag)
		}
	}
	if seen != 2 {
		t.Fatalf("kinds %v: want turnd and turnd-alt", env.kinds)
	}
}
