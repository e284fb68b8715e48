//go:build linux

package natlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pion/stun/v4"
)

// STUN ports of the RFC 5780 servers in the public namespace. Both servers
// can run at once: coturn on the first pair, turnd on the second.
const (
	CoturnPort    = 3478 // coturn primary; alternate is CoturnPort+1
	TurndPort     = 3488 // turnd primary; alternate is TurndPort+1
	coturnMinPort = 49152
	coturnMaxPort = 49999
)

// StartCoturn runs coturn's turnserver in RFC 5780 mode in the public
// namespace: listening on PublicIP1 and PublicIP2, port CoturnPort and the
// alternate port CoturnPort+1, no auth, no TLS/DTLS, no config file, its
// pid and log files under dir. It returns once the server answers a Binding
// request on its primary address.
func (l *Lab) StartCoturn(ctx context.Context, dir string) (*Proc, error) {
	args := []string{
		"-n", // no configuration file
		"--listening-ip", PublicIP1.String(),
		"--listening-ip", PublicIP2.String(),
		"--listening-port", strconv.Itoa(CoturnPort),
		"--alt-listening-port", strconv.Itoa(CoturnPort + 1),
		"--relay-ip", PublicIP1.String(),
		"--min-port", strconv.Itoa(coturnMinPort), "--max-port", strconv.Itoa(coturnMaxPort),
		"--no-auth", "--no-tls", "--no-dtls", "--no-tcp", "--no-cli",
		"--realm", "natlab",
		"--pidfile", filepath.Join(dir, "turnserver.pid"),
		"--log-file", filepath.Join(dir, "turnserver.log"), "--simple-log", "--no-stdout-log",
	}
	p, err := l.Start(Public, "turnserver", args...)
	if err != nil {
		return nil, err
	}
	if err := l.WaitSTUN(ctx, netip.AddrPortFrom(PublicIP1, CoturnPort), p); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "turnserver.log"))
		return p, fmt.Errorf("coturn: %w\n%s%s", err, p.Output(), tail(log, 2000))
	}
	return p, nil
}

// StartTurnd runs a turnd binary in RFC 5780 mode in the public namespace,
// on PublicIP1/PublicIP2 at TurndPort and TurndPort+1, and returns once it
// answers a Binding request. extra flags are appended.
func (l *Lab) StartTurnd(ctx context.Context, bin string, extra ...string) (*Proc, error) {
	args := append([]string{
		"--rfc5780",
		"--listening-ip", PublicIP1.String(),
		"--alt-listening-ip", PublicIP2.String(),
		"--listening-port", strconv.Itoa(TurndPort),
		"--alt-listening-port", strconv.Itoa(TurndPort + 1),
		"--realm", "natlab",
		"--static-auth-secret", "natlab-secret",
	}, extra...)
	p, err := l.Start(Public, bin, args...)
	if err != nil {
		return nil, err
	}
	if err := l.WaitSTUN(ctx, netip.AddrPortFrom(PublicIP1, TurndPort), p); err != nil {
		return p, fmt.Errorf("turnd: %w\n%s", err, p.Output())
	}
	return p, nil
}

// WaitSTUN sends Binding requests to server from the public namespace until
// one is answered (every 100 ms, for at most 10 s or until p exits).
func (l *Lab) WaitSTUN(ctx context.Context, server netip.AddrPort, p *Proc) error {
	c, err := l.ListenUDP(Public, netip.AddrPortFrom(PeerIP, 0))
	if err != nil {
		return err
	}
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		if p != nil {
			select {
			case <-p.Done():
				return fmt.Errorf("exited before answering: %v", p.Err())
			default:
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		if _, err := c.WriteToUDPAddrPort(req.Raw, server); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return err
			}
			var m stun.Message
			m.Raw = append([]byte(nil), buf[:n]...)
			if m.Decode() == nil && m.TransactionID == req.TransactionID && m.Type == stun.BindingSuccess {
				return nil
			}
		}
	}
	return fmt.Errorf("no Binding answer from %s in 10s", server)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
