//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
	"github.com/rtcsuite/rtcsuite/internal/turnrest"
	"github.com/rtcsuite/rtcsuite/signaling"
)

// TestHubCredentialsWorkWithCoturn: the TURN credentials a peer gets in
// its welcome message are accepted by coturn 4.6.1 configured with the same
// secret (use-auth-secret), so the hub works in front of coturn as it does
// in front of turnd.
func TestHubCredentialsWorkWithCoturn(t *testing.T) {
	bin := testenv.NeedCommand(t, "turnserver", "coturn")
	secret := "hub-and-coturn-share-this"
	port := coturn_freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	dir := t.TempDir()
	cmd := exec.Command(bin, "-n", "--listening-ip=127.0.0.1", "--listening-port="+strconv.Itoa(port),
		"--relay-ip=127.0.0.1", "--min-port=40000", "--max-port=40999",
		"--use-auth-secret", "--static-auth-secret="+secret, "--realm=rtcsuite",
		"--no-tls", "--no-dtls", "--no-cli", "--no-tcp-relay",
		"--pidfile="+filepath.Join(dir, "pid"), "--log-file="+filepath.Join(dir, "log"), "--simple-log")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Logf("coturn log:\n%s", b)
		}
	})
	coturn_waitSTUN(t, addr)

	srv := signal_startHub(t, []byte(secret), "turn:"+addr+"?transport=udp")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := signaling.Dial(ctx, srv.URL+"/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := c.Join(ctx, "coturn", "")
	if err != nil {
		t.Fatal(err)
	}
	ice := w.ICEServers[0]

	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: ice.Username, Password: ice.Credential, Realm: "rtcsuite",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	relayConn, err := cl.Allocate()
	if err != nil {
		t.Fatalf("coturn refused the hub's credential %q: %v", ice.Username, err)
	}
	relayConn.Close()

	// And a credential signed with another secret is refused.
	bad := turnrest.Mint([]byte("not-the-secret"), w.ID, time.Now().Add(time.Hour))
	conn2, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	defer conn2.Close()
	cl2, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn2,
		Username: bad.Username, Password: bad.Password, Realm: "rtcsuite", RTO: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	if err := cl2.Listen(); err != nil {
		t.Fatal(err)
	}
	if rc, err := cl2.Allocate(); err == nil {
		rc.Close()
		t.Fatal("coturn accepted a credential signed with another secret")
	}
}

// coturn_freePort finds a port free on 127.0.0.1 for both UDP and TCP.
func coturn_freePort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 20; i++ {
		u, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := u.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p))
		u.Close()
		if err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// coturn_waitSTUN waits (bounded) until a Binding request to addr is answered.
func coturn_waitSTUN(t *testing.T, addr string) {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to, _ := net.ResolveUDPAddr("udp4", addr)
	buf := make([]byte, 1500)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		_, _ = c.WriteTo(req.Raw, to)
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, _, err := c.ReadFrom(buf); err == nil {
			m := &stun.Message{Raw: buf[:n]}
			if m.Decode() == nil && m.TransactionID == req.TransactionID {
				return
			}
		}
	}
	t.Fatalf("coturn on %s never answered STUN", addr)
}
