//go:build linux

package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
)

// TestDeployRecipe runs the documented install (deploy/install.sh and the
// Let's Encrypt hook) as root into a temporary root directory, checks the
// units with systemd-analyze verify, and starts turnd and signal from the
// installed configs as their service users with only CAP_NET_BIND_SERVICE,
// in a network namespace where ports below 4000 are privileged: turnd binds
// 3478 and 443, signal 443, and neither runs as root.
func TestDeployRecipe(t *testing.T) {
	testenv.NeedRoot(t)
	for _, c := range [][2]string{{"useradd", "passwd"}, {"groupadd", "passwd"}, {"setpriv", "util-linux"},
		{"systemd-analyze", "systemd"}, {"ip", "iproute2"}} {
		testenv.NeedCommand(t, c[0], c[1])
	}
	root := hygiene_root(t)
	turndBin := turnd_build(t)
	signalBin := deploy_build(t, "signal")

	dest, err := os.MkdirTemp("", "coturn-deploy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dest) })
	// The service users must reach the binaries and configs below dest.
	if err := os.Chmod(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	// A staged /etc for useradd --prefix.
	for name, text := range map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/bash\n", "group": "root:x:0:\n",
		"shadow": "root:*:19000:0:99999:7:::\n", "gshadow": "root:*::\n",
	} {
		mode := os.FileMode(0o644)
		if strings.Contains(name, "shadow") {
			mode = 0o640
		}
		if err := os.MkdirAll(filepath.Join(dest, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dest, "etc", name), []byte(text), mode); err != nil {
			t.Fatal(err)
		}
	}

	install := func() string {
		t.Helper()
		cmd := exec.Command("bash", filepath.Join(root, "deploy/install.sh"))
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "DESTDIR=" + dest, "TURND_BIN=" + turndBin, "SIGNAL_BIN=" + signalBin}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("deploy/install.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	install()
	ids := deploy_ids(t, dest)
	for _, svc := range []string{"turnd", "signal"} {
		if ids[svc] == 0 {
			t.Fatalf("install.sh created no %s user and group: %v", svc, ids)
		}
		deploy_wantMode(t, filepath.Join(dest, "etc", svc), 0o750|os.ModeDir, 0, ids[svc])
		deploy_wantMode(t, filepath.Join(dest, "etc", svc, svc+".conf"), 0o640, 0, ids[svc])
	}
	turndConf := deploy_read(t, filepath.Join(dest, "etc/turnd/turnd.conf"))
	signalConf := deploy_read(t, filepath.Join(dest, "etc/signal/signal.conf"))
	secret := deploy_value(turndConf, "static-auth-secret")
	if strings.Contains(turndConf+signalConf, "change-me") || len(secret) != 64 || deploy_value(signalConf, "turn-secret") != secret {
		t.Fatalf("installed configs: placeholders left, or turnd's secret %q is not signal's turn-secret", secret)
	}
	// Idempotent: a second run keeps the configs (and the secret).
	if out := install(); !strings.Contains(out, "keeping existing") || deploy_read(t, filepath.Join(dest, "etc/turnd/turnd.conf")) != turndConf {
		t.Errorf("second install.sh changed the config:\n%s", out)
	}

	// The units, pointed at the staged tree, pass systemd-analyze verify; a
	// missing binary makes it fail (so the check is real).
	units := filepath.Join(dest, "etc/systemd/system")
	rewrite := strings.NewReplacer("/usr/local/bin/", dest+"/usr/local/bin/", "/etc/turnd/", dest+"/etc/turnd/", "/etc/signal/", dest+"/etc/signal/")
	for _, svc := range []string{"turnd", "signal"} {
		p := filepath.Join(units, svc+".service")
		unit := deploy_read(t, p)
		for _, want := range []string{"User=" + svc, "AmbientCapabilities=CAP_NET_BIND_SERVICE", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "ExecStart=/usr/local/bin/" + svc + " --config /etc/" + svc + "/" + svc + ".conf"} {
			if !strings.Contains(unit, want) {
				t.Errorf("%s.service lacks %q", svc, want)
			}
		}
		if err := os.WriteFile(p, []byte(rewrite.Replace(unit)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	verify := func(unit string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "systemd-analyze", "verify", unit)
		cmd.Dir = units
		return cmd.CombinedOutput()
	}
	for _, svc := range []string{"turnd", "signal"} {
		if out, err := verify("./" + svc + ".service"); err != nil {
			t.Errorf("systemd-analyze verify %s.service: %v\n%s", svc, err, out)
		}
	}
	broken := filepath.Join(units, "broken-coturn.service")
	unit := strings.Replace(deploy_read(t, filepath.Join(units, "turnd.service")), dest+"/usr/local/bin/turnd", dest+"/usr/local/bin/missing", 1)
	if err := os.WriteFile(broken, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := verify("./broken-coturn.service"); err == nil {
		t.Errorf("systemd-analyze verify accepted a unit whose binary is missing:\n%s", out)
	}
	os.Remove(broken)

	// Let's Encrypt: certbot's live directory is root-only; the hook gives
	// each service a group-readable copy.
	lineage := filepath.Join(dest, "letsencrypt-live")
	deploy_cert(t, lineage)
	hook := exec.Command(filepath.Join(dest, "usr/local/lib/rtcsuite/certbot-deploy-hook"))
	hook.Env = []string{"PATH=" + os.Getenv("PATH"), "DESTDIR=" + dest, "RENEWED_LINEAGE=" + lineage}
	if out, err := hook.CombinedOutput(); err != nil {
		t.Fatalf("certbot-deploy-hook: %v\n%s", err, out)
	}
	for _, svc := range []string{"turnd", "signal"} {
		for _, f := range []string{"fullchain.pem", "privkey.pem"} {
			deploy_wantMode(t, filepath.Join(dest, "etc", svc, "tls", f), 0o640, 0, ids[svc])
		}
	}

	// A network namespace of our own where ports below 4000 need
	// CAP_NET_BIND_SERVICE, so nothing collides with the host's 3478.
	ns := fmt.Sprintf("coturn-deploy-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	for _, args := range [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=4000"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	asUser := func(svc string, caps bool, args ...string) *exec.Cmd {
		id := strconv.Itoa(ids[svc])
		p := []string{"netns", "exec", ns, "setpriv", "--reuid", id, "--regid", id, "--groups", id}
		if caps {
			p = append(p, "--inh-caps=-all,+net_bind_service", "--ambient-caps=+net_bind_service", "--bounding-set=-all,+net_bind_service")
		} else {
			p = append(p, "--inh-caps=-all", "--bounding-set=-all")
		}
		cmd := exec.Command("ip", append(p, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		return cmd
	}
	turndArgs := []string{dest + "/usr/local/bin/turnd", "--config", dest + "/etc/turnd/turnd.conf", "--log-format", "json",
		"--listening-ip", "127.0.0.1", "--tls-listening-port", "443",
		"--cert", dest + "/etc/turnd/tls/fullchain.pem", "--pkey", dest + "/etc/turnd/tls/privkey.pem"}

	// Without the capability the service user cannot bind 3478 here.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plain := asUser("turnd", false, turndArgs...)
	out, err := exec.CommandContext(ctx, plain.Path, plain.Args[1:]...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "permission denied") {
		t.Fatalf("turnd without CAP_NET_BIND_SERVICE: %v, want a bind permission error:\n%s", err, out)
	}

	// With it (what AmbientCapabilities= gives) turnd serves 3478 and 443.
	line := deploy_serve(t, asUser("turnd", true, turndArgs...), ids["turnd"], `"msg":"turnd serving"`)
	for _, want := range []string{"udp://127.0.0.1:3478", "tcp://127.0.0.1:3478", "tls://127.0.0.1:443"} {
		if !strings.Contains(line, want) {
			t.Errorf("turnd serving line lacks %s: %s", want, line)
		}
	}
	deploy_serve(t, asUser("signal", true, dest+"/usr/local/bin/signal", "--config", dest+"/etc/signal/signal.conf", "--log-format", "json",
		"--tls-cert", dest+"/etc/signal/tls/fullchain.pem", "--tls-key", dest+"/etc/signal/tls/privkey.pem"),
		ids["signal"], `"msg":"signal serving"`)
}

// deploy_serve starts cmd, waits for the log line containing ready, checks
// the process runs as uid with no capability beyond CAP_NET_BIND_SERVICE,
// stops it with SIGTERM and waits for it. It returns the ready line.
func deploy_serve(t *testing.T, cmd *exec.Cmd, uid int, ready string) string {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_ = cmd.Wait()
		close(exited)
	}()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill() // by pid
			<-exited
		}
	}()
	var log strings.Builder
	timer := time.NewTimer(time.Minute) // a bound, not a measurement
	defer timer.Stop()
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("%s exited before serving:\n%s", cmd.Args, log.String())
			}
			log.WriteString(l + "\n")
			if !strings.Contains(l, ready) {
				continue
			}
			// ip netns exec and setpriv exec in place: the pid is the server's.
			status := deploy_read(t, fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
			for _, f := range strings.Split(status, "\n") {
				k, v, _ := strings.Cut(f, ":")
				v = strings.TrimSpace(v)
				switch k {
				case "Uid":
					if fs := strings.Fields(v); len(fs) < 4 || fs[0] != strconv.Itoa(uid) || fs[1] != strconv.Itoa(uid) || fs[3] != strconv.Itoa(uid) {
						t.Errorf("%s runs as uids %q, want %d", cmd.Args[len(cmd.Args)-1], v, uid)
					}
				case "CapEff", "CapPrm":
					if v != "0000000000000400" { // CAP_NET_BIND_SERVICE only
						t.Errorf("%s = %s, want only CAP_NET_BIND_SERVICE", k, v)
					}
				}
			}
			return l
		case <-timer.C:
			t.Fatalf("%s did not serve within the bound:\n%s", cmd.Args, log.String())
		}
	}
}

func deploy_build(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/"+name)
	cmd.Dir = hygiene_root(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, out)
	}
	return bin
}

// deploy_ids reads the uids of the staged users (each has its own group
// with the same name; install.sh creates the group first).
func deploy_ids(t *testing.T, dest string) map[string]int {
	t.Helper()
	ids := map[string]int{}
	for _, l := range strings.Split(deploy_read(t, filepath.Join(dest, "etc/passwd")), "\n") {
		f := strings.Split(l, ":")
		if len(f) > 3 && f[2] == f[3] {
			id, _ := strconv.Atoi(f[2])
			ids[f[0]] = id
		}
	}
	return ids
}

func deploy_wantMode(t *testing.T, path string, mode os.FileMode, uid, gid int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode() != mode || int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s: %v %d:%d, want %v %d:%d", path, fi.Mode(), st.Uid, st.Gid, mode, uid, gid)
	}
}

func deploy_read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func deploy_value(conf, key string) string {
	for _, l := range strings.Split(conf, "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v
		}
	}
	return ""
}

// deploy_cert writes a certbot-like live directory (root-only key).
func deploy_cert(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "turn.example.com"},
		DNSNames: []string{"turn.example.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fullchain.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "privkey.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}
