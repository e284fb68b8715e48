package turnrest

import (
	"errors"
	"testing"
	"time"
)

func TestMintMatchesCoturnFormat(t *testing.T) {
	// Vector computed independently: printf '%s' 1700000000:alice |
	//   openssl dgst -sha1 -hmac secret -binary | base64
	c := Mint([]byte("secret"), "alice", time.Unix(1700000000, 0))
	if c.Username != "1700000000:alice" {
		t.Fatalf("username = %q", c.Username)
	}
	if c.Password != "d8soP47RbdIKLDUOpnJPVQyq5Ts=" {
		t.Fatalf("password = %q", c.Password)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in       string
		wantUser string
		wantSec  int64
		wantErr  error
	}{
		{"1700000000:alice", "alice", 1700000000, nil},
		{"1700000000:a:b:c", "a:b:c", 1700000000, nil},
		{"1700000000", "", 1700000000, nil},
		{"", "", 0, ErrMalformed},
		{":alice", "", 0, ErrMalformed},
		{"-5:alice", "", 0, ErrMalformed},
		{"12a:alice", "", 0, ErrMalformed},
		{"99999999999999999999:x", "", 0, ErrMalformed},
		{"alice", "", 0, ErrMalformed},
	}
	for _, tt := range tests {
		exp, user, err := Parse(tt.in)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("Parse(%q) err = %v, want %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && (user != tt.wantUser || exp.Unix() != tt.wantSec) {
			t.Errorf("Parse(%q) = %v %q", tt.in, exp.Unix(), user)
		}
	}
}

func TestCheckRotation(t *testing.T) {
	now := time.Unix(1700000000, 0)
	old, cur := []byte("old"), []byte("new")
	c := Mint(old, "bob", now.Add(time.Hour))
	idx, err := Check([][]byte{cur, old}, c.Username, c.Password, now)
	if err != nil || idx != 1 {
		t.Fatalf("Check = %d, %v; want 1, nil", idx, err)
	}
	if _, err := Check([][]byte{cur}, c.Username, c.Password, now); !errors.Is(err, ErrBadSecret) {
		t.Fatalf("unknown secret: err = %v", err)
	}
	if _, err := Check([][]byte{old}, c.Username, c.Password, now.Add(2*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: err = %v", err)
	}
}

func TestKeysMatchLongTermKey(t *testing.T) {
	secrets := [][]byte{[]byte("a"), []byte("b")}
	keys := Keys(secrets, "1:u", "realm")
	for i, s := range secrets {
		want := LongTermKey("1:u", "realm", Password(s, "1:u"))
		if string(keys[i]) != string(want) {
			t.Fatalf("key %d mismatch", i)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("1700000000:alice")
	f.Add("1:")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		exp, user, err := Parse(s)
		if err != nil {
			return
		}
		round := Mint([]byte("k"), user, exp)
		if user != "" && round.Username != s && s[0] != '0' {
			t.Fatalf("round trip %q -> %q", s, round.Username)
		}
	})
}
