//go:build linux

package main

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	hub := &client{target: targetHub}
	pj := &client{target: targetPeerJS}
	tests := []struct {
		name string
		cl   *client
		in   string
		want parsed
	}{
		{"hub signal", hub, `{"type":"signal","from":"AbC_9","data":{"bt":123,"bo":0}}`,
			parsed{signal: true, from: "AbC_9", bt: 123}},
		{"hub echo", hub, `{"type":"signal","from":"x","data":{"bt":5,"bo":42}}`,
			parsed{signal: true, from: "x", bt: 5, bo: 42}},
		{"hub peer-joined", hub, `{"type":"peer-joined","id":"p2"}`, parsed{joined: "p2"}},
		{"hub peer-left", hub, `{"type":"peer-left","id":"p2"}`, parsed{}},
		{"hub ice-servers", hub, `{"type":"ice-servers","iceServers":[]}`, parsed{}},
		{"hub error", hub, `{"type":"error","code":"rate-limited","message":"m"}`, parsed{bad: true}},
		{"hub signal without from", hub, `{"type":"signal","data":{"bt":1,"bo":0}}`, parsed{bt: 1, bad: true}},
		{"peerjs offer", pj, `{"type":"OFFER","src":"p1-0","dst":"p1-1","payload":{"bt":9,"bo":8}}`,
			parsed{signal: true, from: "p1-0", bt: 9, bo: 8}},
		{"peerjs expire", pj, `{"type":"EXPIRE","src":"a","dst":"b"}`, parsed{bad: true}},
		{"peerjs peer-joined is not a hub event", pj, `{"type":"peer-joined","id":"p2"}`, parsed{bad: true}},
		{"empty", hub, ``, parsed{bad: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cl.parse([]byte(tt.in)); got != tt.want {
				t.Errorf("parse(%s) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

// TestSignalFrameRoundTrip checks that what the generator sends is what it
// reads back once the server has stamped the sender.
func TestSignalFrameRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		cl       *client
		relayed  func(data string) string // what the server forwards
		from, to string
	}{
		{&client{target: targetHub}, func(d string) string { return `{"type":"signal","from":"S1","data":` + d + `}` }, "S1", "R1"},
		{&client{target: targetPeerJS}, func(d string) string { return `{"type":"OFFER","src":"S1","dst":"R1","payload":` + d + `}` }, "S1", "R1"},
	} {
		b := string(tt.cl.signalFrame(nil, tt.to, 1700000000123456789, 17))
		// Cut the data object out of the frame as the server would.
		var key string
		if tt.cl.target == targetHub {
			key = `"data":`
		} else {
			key = `"payload":`
		}
		i := strings.Index(b, key)
		if i < 0 || b[len(b)-1] != '}' {
			t.Fatalf("%s: frame %s has no %s", tt.cl.target, b, key)
		}
		data := b[i+len(key) : len(b)-1]
		got := tt.cl.parse([]byte(tt.relayed(data)))
		want := parsed{signal: true, from: tt.from, bt: 1700000000123456789, bo: 17}
		if got != want {
			t.Errorf("%s: round trip of %s = %+v, want %+v", tt.cl.target, b, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"type":"signal","from":"a","data":{"bt":1,"bo":2}}`), false)
	f.Add([]byte(`{"type":"OFFER","src":"a","payload":{"bt":99999999999999999999999}}`), true)
	f.Add([]byte(`"bt":`), false)
	f.Add([]byte(`"from":"`), false)
	f.Fuzz(func(t *testing.T, b []byte, peerjs bool) {
		cl := &client{target: targetHub}
		if peerjs {
			cl.target = targetPeerJS
		}
		p := cl.parse(b) // must not panic
		if p.signal && p.from == "" {
			t.Errorf("signal without a sender: %+v", p)
		}
		if p.signal && p.bad {
			t.Errorf("both signal and bad: %+v", p)
		}
	})
}
