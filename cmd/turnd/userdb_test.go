package main

import (
	"bytes"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rtcsuite/rtcsuite/internal/testenv"
	"github.com/rtcsuite/rtcsuite/internal/turnrest"
)

func TestUserDBSQLiteFixture(t *testing.T) {
	// testdata/coturn-userdb.sqlite was written by coturn 4.6.1's turnadmin:
	//   turnadmin -b F -a -u alice -r example.com -p wonderland
	//   turnadmin -b F -a -u bob -r other.example -p builder
	//   turnadmin -b F -s 3f1c2a4e9b7d6c5a8e0f1b2c3d4e5f60 -r example.com
	before, err := os.ReadFile("testdata/coturn-userdb.sqlite")
	if err != nil {
		t.Fatal(err)
	}
	db, err := readUserDB("testdata/coturn-userdb.sqlite", "example.com", extOptions{useAuthSecret: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(db.users) != 1 || db.users[0].Name != "alice" ||
		!bytes.Equal(db.users[0].Key, turnrest.LongTermKey("alice", "example.com", "wonderland")) {
		t.Errorf("users of example.com = %+v, want alice with MD5(alice:example.com:wonderland)", db.users)
	}
	if len(db.secrets) != 1 || string(db.secrets[0]) != "3f1c2a4e9b7d6c5a8e0f1b2c3d4e5f60" {
		t.Errorf("secrets = %q", db.secrets)
	}
	if db, _ := readUserDB("testdata/coturn-userdb.sqlite", "example.com", extOptions{}); len(db.secrets) != 0 {
		t.Error("turn_secret rows read without use-auth-secret (coturn ignores them then)")
	}
	after, _ := os.ReadFile("testdata/coturn-userdb.sqlite")
	if !bytes.Equal(before, after) {
		t.Error("reading the database changed it")
	}
}

func TestUserDBRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "random.bin")
	junk := append([]byte("\x7fELF\x02\x01\x01secretstuff"), bytes.Repeat([]byte{0, 0xff, 0xfe}, 100)...)
	if err := os.WriteFile(bin, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := readUserDB(bin, "r", extOptions{})
	if err == nil || !strings.Contains(err.Error(), "neither a SQLite database") {
		t.Fatalf("binary file: %v", err)
	}
	if strings.Contains(err.Error(), "ELF") || strings.Contains(err.Error(), "secretstuff") || strings.ContainsRune(err.Error(), 0) {
		t.Errorf("error quotes the file: %q", err)
	}
	// A SQLite database without coturn's tables.
	other := filepath.Join(dir, "other.sqlite")
	conn, err := sql.Open("sqlite", other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec("CREATE TABLE t(x)"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if _, err := readUserDB(other, "r", extOptions{}); err == nil || !strings.Contains(err.Error(), "not a coturn user database") {
		t.Errorf("foreign SQLite database: %v", err)
	}
}

// turnadmin runs coturn's turnadmin and removes the log file it leaves in
// /var/log (named after its pid).
func turnadmin(t *testing.T, args ...string) {
	t.Helper()
	path := testenv.NeedCommand(t, "turnadmin", "coturn")
	cmd := exec.Command(path, args...)
	out, err := cmd.CombinedOutput()
	if cmd.Process != nil {
		logs, _ := filepath.Glob("/var/log/turn_" + strconv.Itoa(cmd.Process.Pid) + "_*.log")
		for _, l := range logs {
			os.Remove(l)
		}
	}
	if err != nil {
		t.Fatalf("turnadmin %v: %v\n%s", args, err, out)
	}
}

// TestUserDBTurnadminReload serves users from a database turnadmin edits
// while turnd runs, re-read on SIGHUP.
func TestUserDBTurnadminReload(t *testing.T) {
	db := filepath.Join(t.TempDir(), "turndb")
	turnadmin(t, "-b", db, "-a", "-u", "carol", "-r", "run.test", "-p", "carol-pass-2026")
	r := startTurndRun(t, "--userdb", db)
	if err := r.allocate(t, "carol", "carol-pass-2026"); err != nil {
		t.Fatalf("carol from the SQLite userdb: %v", err)
	}
	if err := r.allocate(t, "dave", "dave-pass-2026"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("dave before turnadmin added him: %v, want 401", err)
	}
	turnadmin(t, "-b", db, "-a", "-u", "dave", "-r", "run.test", "-p", "dave-pass-2026")
	turnadmin(t, "-b", db, "-d", "-u", "carol", "-r", "run.test")
	r.reload <- os.Interrupt
	r.reload <- os.Interrupt // the second send returns once the first reload was applied
	if err := r.allocate(t, "dave", "dave-pass-2026"); err != nil {
		t.Errorf("dave after SIGHUP: %v", err)
	}
	if err := r.allocate(t, "carol", "carol-pass-2026"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("carol after turnadmin -d and SIGHUP: %v, want 401", err)
	}
	if strings.Contains(r.stderr.String(), "pass-2026") {
		t.Error("a password reached the log")
	}
}

// FuzzUserDB feeds arbitrary files to --userdb: no panic, and an error
// never carries a NUL byte (the file's binary content).
func FuzzUserDB(f *testing.F) {
	f.Add([]byte("alice:wonderland\n# comment\nbob:0x00112233445566778899aabbccddeeff\n"))
	f.Add([]byte("SQLite format 3\x00garbage"))
	f.Add([]byte{0xff, 0xfe, 0, 1})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := readUserDB(path, "r", extOptions{useAuthSecret: true})
		if err != nil && strings.ContainsRune(err.Error(), 0) {
			t.Fatalf("error carries binary: %q", err)
		}
	})
}
