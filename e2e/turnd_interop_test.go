package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
)

// Interop with a TURN client nobody here wrote: coturn's turnutils_uclient
// relays through the turnd binary to coturn's turnutils_peer echo peer on
// loopback, over UDP and TCP to the server, with channels and with
// Send/Data indications, authenticated with a static user or a TURN REST
// credential. Each flow must get every packet back.
func TestTurndUclientInterop(t *testing.T) {
	uclient := testenv.NeedCommand(t, "turnutils_uclient", "coturn")
	peerBin := testenv.NeedCommand(t, "turnutils_peer", "coturn")
	bin := turnd_build(t)

	const (
		realm    = "interop.test"
		secret   = "interop-rest-secret"
		flows    = 2
		packets  = 1000 // per flow
		pktBytes = 1200
		// 200 packets/s per flow: 5 s of sending. Faster rates lose an
		// occasional datagram to a full loopback socket buffer when the
		// machine is busy (four cases run in parallel with other packages),
		// which would make "no loss" a test of the machine's load.
		intervalMS = 5
	)
	cases := []struct {
		name string
		tcp  bool // client to server over TCP (-t)
		send bool // Send/Data indications instead of channels (-s)
		rest bool // TURN REST credential (-W) instead of a static user
		// rtcp leaves out -c: uclient's default mode, where each client
		// allocates an RTP/RTCP pair with EVEN-PORT on one socket and
		// claims the reserved odd port with RESERVATION-TOKEN from another.
		rtcp bool
		// tcpRelay is -T: RFC 6062 TCP relays, client to client (-y), no
		// echo peer; each client Connects to the other's relay address.
		tcpRelay bool
		clients  int // -m; default flows
		packets  int // -n; default packets
	}{
		{name: "udp/channel/static-user"},
		{name: "udp/send-indication/rest", send: true, rest: true},
		{name: "tcp/channel/rest", tcp: true, rest: true},
		{name: "tcp/send-indication/static-user", tcp: true, send: true},
		// The default mode failed with 508 from 3 clients up while
		// reservations were lost across turnd's SO_REUSEPORT sockets.
		{name: "udp/default-mode/5-clients", rtcp: true, clients: 5, packets: 200},
		{name: "tcp/default-mode/rest/3-clients", tcp: true, rtcp: true, rest: true, clients: 3, packets: 200},
		{name: "tcp-relay/client-to-client", tcpRelay: true, clients: 2, packets: 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			peer := turnd_startPeer(t, peerBin)
			d := turnd_start(t, bin,
				"--realm", realm,
				"--listening-ip", "127.0.0.1",
				"--listening-port", "0",
				"--udp-sockets", "2",
				"--admin-listen", "127.0.0.1:0",
				"--user", "alice:wonderland",
				"--static-auth-secret", secret,
				// The peer is on loopback, which turnd refuses by default.
				"--allow-loopback-peers",
			)

			clients, perFlow := flows, packets
			if tc.clients != 0 {
				clients, perFlow = tc.clients, tc.packets
			}
			server := d.UDP
			args := []string{"-m", strconv.Itoa(clients), "-n", strconv.Itoa(perFlow),
				"-l", strconv.Itoa(pktBytes), "-z", strconv.Itoa(intervalMS)}
			if !tc.rtcp {
				args = append(args, "-c")
			}
			if tc.tcpRelay {
				args = append(args, "-T")
				server = d.TCP
			} else {
				args = append(args, "-e", peer.IP, "-r", strconv.Itoa(peer.Port))
			}
			if tc.tcp {
				args = append(args, "-t")
				server = d.TCP
			}
			if tc.send {
				args = append(args, "-s")
			}
			if tc.rest {
				// uclient mints "<expiry>:bob" itself; bob is no static user,
				// so success proves the REST path.
				args = append(args, "-W", secret, "-u", "bob")
			} else {
				args = append(args, "-u", "alice", "-w", "wonderland")
			}
			host, port, _ := strings.Cut(server, ":")
			args = append(args, "-p", port, host)

			res := turnd_runUclient(t, uclient, args)
			// In the default mode uclient counts the RTCP sessions' packets
			// too, so at least clients x packets go each way.
			want := clients * perFlow
			if res.sent < want || res.received != res.sent || res.lost != 0 || res.sendDropped != 0 {
				t.Errorf("uclient: sent %d, received %d, lost %d, send dropped %d; want at least %d sent, all received, none lost",
					res.sent, res.received, res.lost, res.sendDropped, want)
			}
			if strings.Contains(res.output, "error 508") {
				t.Errorf("uclient met 508 answers")
			}

			m := turnd_metrics(t, d.Admin)
			if !tc.tcpRelay { // TCP relays count reads, not uclient messages
				for _, dir := range []string{"client_to_peer", "peer_to_client"} {
					key := fmt.Sprintf("turnd_relayed_packets_total{direction=%q}", dir)
					if got := m[key]; got < float64(res.sent) {
						t.Errorf("turnd relayed %v packets %s, want at least %d", got, dir, res.sent)
					}
				}
			}
			// With --listening-port 0 the UDP and TCP listeners got different
			// ports, so a -t run can only have reached turnd over TCP; the
			// allocation counter's label says which.
			transport := "udp"
			if tc.tcp || tc.tcpRelay {
				transport = "tcp"
			}
			key := fmt.Sprintf("turnd_allocations_created_total{transport=%q}", transport)
			if created := m[key]; created < float64(clients) {
				t.Errorf("%s = %v, want at least %d", key, created, clients)
			}
			for k, v := range m {
				if strings.HasPrefix(k, "turnd_auth_failures_total") && v != 0 {
					t.Errorf("%s = %v, want 0", k, v)
				}
			}
			if t.Failed() {
				t.Logf("uclient %s output:\n%s", strings.Join(args, " "), res.output)
			}
		})
	}
}

// turnd_uclientResult is what turnutils_uclient reports at the end of a run.
type turnd_uclientResult struct {
	sent, received    int
	lost, sendDropped int
	output            string
}

var (
	turnd_reTotals = regexp.MustCompile(`start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)
	turnd_reLost   = regexp.MustCompile(`Total lost packets (\d+) \([^)]*\), total send dropped (\d+)`)
)

// turnd_runUclient runs turnutils_uclient and parses its final counters.
// The run is bounded to two minutes (under load uclient may retry an
// allocation for ~20 s after a 437) and killed by pid on timeout.
func turnd_runUclient(t *testing.T, bin string, args []string) turnd_uclientResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	res, perr := turnd_parseUclient(string(out))
	if err != nil || perr != nil {
		t.Fatalf("turnutils_uclient %s: exit %v, parse %v\n%s", strings.Join(args, " "), err, perr, out)
	}
	return res
}

// turnd_parseUclient reads uclient's summary lines:
//
//	6: : start_mclient: tot_send_msgs=2000, tot_recv_msgs=2000
//	6: : Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)
func turnd_parseUclient(out string) (turnd_uclientResult, error) {
	res := turnd_uclientResult{output: out}
	tot := turnd_reTotals.FindAllStringSubmatch(out, -1)
	lost := turnd_reLost.FindStringSubmatch(out)
	if tot == nil || lost == nil {
		return res, fmt.Errorf("no summary lines in uclient output")
	}
	last := tot[len(tot)-1]
	res.sent, _ = strconv.Atoi(last[1])
	res.received, _ = strconv.Atoi(last[2])
	res.lost, _ = strconv.Atoi(lost[1])
	res.sendDropped, _ = strconv.Atoi(lost[2])
	return res, nil
}

func TestTurndParseUclient(t *testing.T) {
	out := `0: : Total connect time is 0
5: : start_mclient: msz=2, tot_send_msgs=118, tot_recv_msgs=116, tot_send_bytes ~ 141600, tot_recv_bytes ~ 139200
6: : start_mclient: tot_send_msgs=2000, tot_recv_msgs=1998
6: : start_mclient: tot_send_bytes ~ 2400000, tot_recv_bytes ~ 2397600
6: : Total transmit time is 6
6: : Total lost packets 2 (0.100000%), total send dropped 1 (0.050000%)
`
	res, err := turnd_parseUclient(out)
	if err != nil {
		t.Fatal(err)
	}
	if res.sent != 2000 || res.received != 1998 || res.lost != 2 || res.sendDropped != 1 {
		t.Errorf("parsed %+v", res)
	}
	if _, err := turnd_parseUclient("0: : Total connect time is 0\n"); err == nil {
		t.Error("no error for output without a summary")
	}
}

func FuzzTurndParseUclient(f *testing.F) {
	f.Add("6: : start_mclient: tot_send_msgs=2000, tot_recv_msgs=2000\n6: : Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)\n")
	f.Add("start_mclient: tot_send_msgs=99999999999999999999, tot_recv_msgs=1\nTotal lost packets 1 (x), total send dropped 2")
	f.Fuzz(func(t *testing.T, out string) {
		res, err := turnd_parseUclient(out)
		if err != nil {
			return
		}
		if res.sent < 0 || res.received < 0 || res.lost < 0 || res.sendDropped < 0 {
			t.Errorf("negative counter from %q: %+v", out, res)
		}
	})
}
