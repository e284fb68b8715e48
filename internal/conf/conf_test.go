package conf

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newFS() (*flag.FlagSet, *string, *int, *bool, *Strings, *string) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	realm := fs.String("realm", "def", "")
	port := fs.Int("listening-port", 3478, "")
	notls := fs.Bool("no-tls", false, "")
	var secrets Strings
	fs.Var(&secrets, "static-auth-secret", "")
	file := fs.String("config", "", "")
	return fs, realm, port, notls, &secrets, file
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "turnd.conf")
	if err := os.WriteFile(path, []byte("# comment\nrealm=file.realm\nlistening-port 4000\nno-tls\nstatic-auth-secret=a\nstatic-auth-secret=b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TURND_LISTENING_PORT": "5000"}
	fs, realm, port, notls, secrets, _ := newFS()
	src, err := Load(fs, []string{"--config", path, "--realm", "flag.realm"}, func(k string) string { return env[k] }, "TURND", "config")
	if err != nil {
		t.Fatal(err)
	}
	if *realm != "flag.realm" || src["realm"] != FromFlag {
		t.Errorf("realm = %q from %s; flag must win", *realm, src["realm"])
	}
	if *port != 5000 || src["listening-port"] != FromEnv {
		t.Errorf("port = %d from %s; env must beat file", *port, src["listening-port"])
	}
	if !*notls || src["no-tls"] != FromFile {
		t.Errorf("no-tls = %v from %s", *notls, src["no-tls"])
	}
	if strings.Join(*secrets, ",") != "a,b" {
		t.Errorf("secrets = %v; repeated file lines accumulate", *secrets)
	}
}

func TestEnvSplitsRepeatable(t *testing.T) {
	fs, _, _, _, secrets, _ := newFS()
	env := map[string]string{"X_STATIC_AUTH_SECRET": "one, two"}
	if _, err := Load(fs, nil, func(k string) string { return env[k] }, "X", ""); err != nil {
		t.Fatal(err)
	}
	if strings.Join(*secrets, ",") != "one,two" {
		t.Fatalf("secrets = %v", *secrets)
	}
}

func TestErrorsAllReported(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(path, []byte("bogus=1\nlistening-port=abc\nrealm\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs, _, _, _, _, _ := newFS()
	env := map[string]string{}
	_, err := Load(fs, []string{"--config", path}, func(k string) string { return env[k] }, "X", "config")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"unknown setting \"bogus\"", "listening-port", "realm needs a value"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func FuzzParseFile(f *testing.F) {
	f.Add("realm=x\nno-tls\nstatic-auth-secret a\n")
	f.Fuzz(func(t *testing.T, s string) {
		fs, _, _, _, _, _ := newFS()
		_ = parseFile(fs, strings.NewReader(s), "fuzz", map[string]Source{}, nil)
	})
}

func TestLogger(t *testing.T) {
	var b strings.Builder
	l, err := Logger(&b, "json", "debug")
	if err != nil {
		t.Fatal(err)
	}
	l.Debug("hello")
	if !strings.Contains(b.String(), `"msg":"hello"`) {
		t.Fatalf("json debug log missing: %q", b.String())
	}
	l, err = Logger(&b, "xml", "loud")
	if err == nil || !strings.Contains(err.Error(), "log-format") || !strings.Contains(err.Error(), "log-level") {
		t.Fatalf("both problems must be reported: %v", err)
	}
	if l == nil {
		t.Fatal("no fallback logger")
	}
}

func TestTranslatorAndInlineComments(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.conf")
	text := "realm=a.example   # inline comment\nfoo-alias=4000\nimplied-realm\nrealm2 \"x # y\"\nrefuse-me\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	fs, realm, port, _, _, _ := newFS()
	tr := func(name, value string, hasValue bool) ([]Setting, bool, error) {
		switch name {
		case "foo-alias":
			return []Setting{{"listening-port", value}}, true, nil
		case "implied-realm": // implies another name: loses to the explicit realm line
			return []Setting{{"realm", "implied"}}, true, nil
		case "realm2":
			if value != "x # y" { // quoted: not a comment
				return nil, true, errors.New("value " + value)
			}
			return nil, true, nil
		case "refuse-me":
			return nil, true, errors.New("refused: because")
		}
		return nil, false, nil
	}
	_, err := LoadWith(fs, []string{"--config", path}, func(string) string { return "" }, "X", "config", tr)
	if err == nil || !strings.Contains(err.Error(), path+":5: refuse-me: refused: because") || strings.Count(err.Error(), "\n") != 0 {
		t.Fatalf("want exactly the refusal, got %v", err)
	}
	if *realm != "a.example" || *port != 4000 {
		t.Errorf("realm %q port %d", *realm, *port)
	}
}

func TestPrintDefaultsDoubleDash(t *testing.T) {
	fs, _, _, _, _, _ := newFS()
	var b strings.Builder
	PrintDefaults(&b, fs)
	if !strings.Contains(b.String(), "  --realm string\n") || !strings.Contains(b.String(), `(default "def")`) ||
		!strings.Contains(b.String(), "  --listening-port int\n") || !strings.Contains(b.String(), "(default 3478)") {
		t.Errorf("%s", b.String())
	}
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "  -") && !strings.HasPrefix(l, "  --") {
			t.Errorf("single dash: %q", l)
		}
	}
}

func TestCheckSecret(t *testing.T) {
	if _, err := CheckSecret("s", []byte("change-me-to-a-long-random-string")); !errors.Is(err, ErrPlaceholderSecret) {
		t.Errorf("placeholder: %v", err)
	}
	if w, err := CheckSecret("s", []byte("short")); err != nil || !strings.Contains(w, "5 bytes") || strings.Contains(w, "short") {
		t.Errorf("short: %q %v", w, err)
	}
	if w, err := CheckSecret("s", []byte("0123456789abcdef")); err != nil || w != "" {
		t.Errorf("16 bytes: %q %v", w, err)
	}
	if _, err := CheckSecret("s", nil); err == nil {
		t.Error("empty secret accepted")
	}
}
