package rediscfg

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	o, err := Parse("rediss://:s3cret@redis.example:6380/2")
	if err != nil {
		t.Fatal(err)
	}
	if o.TLSConfig == nil || o.TLSConfig.ServerName != "redis.example" {
		t.Errorf("rediss:// gives no TLS config for the host: %+v", o.TLSConfig)
	}
	if o.Password != "s3cret" || o.DB != 2 || o.Addr != "redis.example:6380" {
		t.Errorf("parsed %q db %d addr %q", o.Password, o.DB, o.Addr)
	}
	if !o.DisableIdentity || o.MaxRetries != -1 || o.ReadTimeout != 2*time.Second {
		t.Errorf("defaults not applied: identity off %v, retries %d, read timeout %v", o.DisableIdentity, o.MaxRetries, o.ReadTimeout)
	}
	if o, err := Parse("redis://h:1?read_timeout=5s"); err != nil || o.ReadTimeout != 5*time.Second {
		t.Errorf("a URL option must win over the default: %v, %v", o.ReadTimeout, err)
	}
	for _, bad := range []string{"", "http://h:1", "redis://h:1/notadb"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
