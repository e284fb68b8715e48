package signaling

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

func TestDecodeClientMessage(t *testing.T) {
	long := strings.Repeat("a", 65)
	tests := []struct {
		name string
		in   string
		want ClientMessage // checked when ok
		ok   bool
	}{
		{"join", `{"type":"join","room":"r1"}`, ClientMessage{Type: TypeJoin, Room: "r1"}, true},
		{"join with token and name", `{"type":"join","room":"a.b_c-d","token":"t","name":"Ada"}`,
			ClientMessage{Type: TypeJoin, Room: "a.b_c-d", Token: "t", Name: "Ada"}, true},
		{"join ignores unknown fields", `{"type":"join","room":"r","future":[1,2]}`, ClientMessage{Type: TypeJoin, Room: "r"}, true},
		{"leading whitespace", " \n{\"type\":\"leave\"}", ClientMessage{Type: TypeLeave}, true},
		{"leave", `{"type":"leave"}`, ClientMessage{Type: TypeLeave}, true},
		{"ping", `{"type":"ping"}`, ClientMessage{Type: TypePing}, true},
		{"resume", `{"type":"resume","token":"abc"}`, ClientMessage{Type: TypeResume, Token: "abc"}, true},
		{"signal", `{"type":"signal","to":"p1","data":{"candidate":{"candidate":"x"}}}`,
			ClientMessage{Type: TypeSignal, To: "p1", Data: json.RawMessage(`{"candidate":{"candidate":"x"}}`)}, true},
		{"signal from is ignored", `{"type":"signal","to":"p1","from":"spoof","data":{}}`,
			ClientMessage{Type: TypeSignal, To: "p1", Data: json.RawMessage(`{}`)}, true},

		{"empty", ``, ClientMessage{}, false},
		{"not json", `hello`, ClientMessage{}, false},
		{"array", `[{"type":"join"}]`, ClientMessage{}, false},
		{"truncated", `{"type":"join","room":"r"`, ClientMessage{}, false},
		{"missing type", `{"room":"r"}`, ClientMessage{}, false},
		{"unknown type", `{"type":"welcome"}`, ClientMessage{}, false},
		{"type not a string", `{"type":1}`, ClientMessage{}, false},
		{"join without room", `{"type":"join"}`, ClientMessage{}, false},
		{"join room too long", `{"type":"join","room":"` + long + `"}`, ClientMessage{}, false},
		{"join room with slash", `{"type":"join","room":"a/b"}`, ClientMessage{}, false},
		{"join room starting with dot", `{"type":"join","room":".a"}`, ClientMessage{}, false},
		{"join room with space", `{"type":"join","room":"a b"}`, ClientMessage{}, false},
		{"join name with control char", `{"type":"join","room":"r","name":"a\u0007"}`, ClientMessage{}, false},
		{"join name too long", `{"type":"join","room":"r","name":"` + long + `"}`, ClientMessage{}, false},
		{"join token too long", `{"type":"join","room":"r","token":"` + strings.Repeat("t", 4097) + `"}`, ClientMessage{}, false},
		{"resume without token", `{"type":"resume"}`, ClientMessage{}, false},
		{"signal without to", `{"type":"signal","data":{}}`, ClientMessage{}, false},
		{"signal to too long", `{"type":"signal","to":"` + long + `","data":{}}`, ClientMessage{}, false},
		{"signal without data", `{"type":"signal","to":"p"}`, ClientMessage{}, false},
		{"signal data string", `{"type":"signal","to":"p","data":"sdp"}`, ClientMessage{}, false},
		{"signal data null", `{"type":"signal","to":"p","data":null}`, ClientMessage{}, false},
		{"signal data array", `{"type":"signal","to":"p","data":[1]}`, ClientMessage{}, false},
		{"to not a string", `{"type":"signal","to":5,"data":{}}`, ClientMessage{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeClientMessage([]byte(tt.in))
			if !tt.ok {
				if err == nil {
					t.Fatalf("DecodeClientMessage(%q) = %+v, want an error", tt.in, got)
				}
				if !errors.Is(err, ErrBadMessage) {
					t.Fatalf("error %v does not wrap ErrBadMessage", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeClientMessage(%q): %v", tt.in, err)
			}
			if got.Type != tt.want.Type || got.Room != tt.want.Room || got.Token != tt.want.Token ||
				got.Name != tt.want.Name || got.To != tt.want.To || string(got.Data) != string(tt.want.Data) {
				t.Fatalf("DecodeClientMessage(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestDecodeErrorsDoNotEchoContent(t *testing.T) {
	secret := "s3cr3t-token-value"
	for _, in := range []string{
		`{"type":"join","room":"` + secret + `/"}`,
		`{"type":"` + secret + strings.Repeat("x", 40) + `"}`,
		`{"type":"signal","to":"p","data":"` + secret + `"}`,
		`{"type":"join","room":"r","token":` + secret + `}`,
	} {
		_, err := DecodeClientMessage([]byte(in))
		if err == nil {
			t.Fatalf("%q decoded", in)
		}
		if strings.Contains(err.Error(), secret) && !strings.Contains(in, `"type":"`+secret) {
			t.Errorf("error %q echoes message content", err)
		}
	}
}

func TestValidRoomName(t *testing.T) {
	for _, tt := range []struct {
		s  string
		ok bool
	}{
		{"a", true}, {"Room-1", true}, {"0.x_y-z", true}, {strings.Repeat("x", 64), true},
		{"", false}, {strings.Repeat("x", 65), false}, {"-a", false}, {"_a", false}, {"a b", false},
		{"a/b", false}, {"ä", false}, {"a\x00", false}, {"a:b", false},
	} {
		if got := ValidRoomName(tt.s); got != tt.ok {
			t.Errorf("ValidRoomName(%q) = %v, want %v", tt.s, got, tt.ok)
		}
	}
}

func TestServerMessageEncoding(t *testing.T) {
	// welcome always carries peers and iceServers arrays, even empty ones.
	b := encode(ServerMessage{Type: TypeWelcome, ID: "x", Room: "r", Peers: []string{}, ICEServers: []ICEServer{}})
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"peers", "iceServers"} {
		if _, ok := m[k].([]any); !ok {
			t.Errorf("welcome %s: %s is not an array", b, k)
		}
	}
	// Other messages omit them.
	b = encode(ServerMessage{Type: TypePeerLeft, ID: "x"})
	if string(b) != `{"type":"peer-left","id":"x"}` {
		t.Errorf("peer-left encodes as %s", b)
	}
	// Signal data passes through as JSON.
	b = encode(ServerMessage{Type: TypeSignal, From: "a", Data: json.RawMessage(`{"k": [1, 2]}`)})
	if string(b) != `{"type":"signal","from":"a","data":{"k":[1,2]}}` {
		t.Errorf("signal encodes as %s", b)
	}
}

func FuzzDecodeClientMessage(f *testing.F) {
	for _, s := range []string{
		`{"type":"join","room":"r","token":"t"}`,
		`{"type":"signal","to":"p","data":{"description":{"type":"offer","sdp":"v=0"}}}`,
		`{"type":"leave"}`, `{"type":"resume","token":"x"}`, `{"type":"ping"}`,
		`{"type":"signal","to":"p","data":{"a":"\ud800"}}`, `{}`, `[]`, `{"type":"join","room":"` + "\xff" + `"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeClientMessage(b)
		if err != nil {
			if !errors.Is(err, ErrBadMessage) {
				t.Fatalf("error %v does not wrap ErrBadMessage", err)
			}
			return
		}
		// Whatever decodes must survive the hub's re-encoding and decode
		// again to the same message.
		if m.Type == TypeSignal {
			out := encode(ServerMessage{Type: TypeSignal, From: "x", Data: m.Data})
			sm, err := DecodeServerMessage(out)
			if err != nil || sm.Type != TypeSignal || sm.From != "x" || !json.Valid(sm.Data) {
				t.Fatalf("re-encoded signal %q: %+v %v", out, sm, err)
			}
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		m2, err := DecodeClientMessage(again)
		if err != nil {
			t.Fatalf("re-decoding %q: %v", again, err)
		}
		if m2.Type != m.Type || m2.Room != m.Room || m2.To != m.To {
			t.Fatalf("round trip changed %+v into %+v", m, m2)
		}
	})
}

func FuzzDecodeServerMessage(f *testing.F) {
	for _, s := range []string{
		`{"type":"welcome","id":"a","room":"r","peers":["b"],"iceServers":[{"urls":["stun:x"]}],"resume":"t"}`,
		`{"type":"error","code":"room-full","message":"m"}`, `{"type":"signal","from":"a","data":{}}`, `{"type":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeServerMessage(b)
		if err == nil && m.Type == "" {
			t.Fatalf("decoded a message without type from %q", b)
		}
	})
}

// signalFrame splices the data into the frame: for compact data it gives
// exactly what the encoder gives, and any from is escaped as JSON.
func TestSignalFrameMatchesEncoder(t *testing.T) {
	for _, tc := range []struct{ from, data string }{
		{"AbC-_123xyzAbC-_123xyz12", `{"sdp":"v=0\r\n","type":"offer"}`},
		{"x", `{"candidate":{"candidate":"a","sdpMid":"0","sdpMLineIndex":0},"n":[1,2.5,null,true]}`},
		{`q"uo\te<&>` + "\u00e9\u2028\x01", `{}`},
		{"p", `{"é":"\u00e9"}`},
	} {
		got := signalFrame(tc.from, []byte(tc.data))
		want := encode(ServerMessage{Type: TypeSignal, From: tc.from, Data: []byte(tc.data)})
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("signalFrame(%q, %s) = %s: not JSON: %v", tc.from, tc.data, got, err)
		}
		_ = json.Unmarshal(want, &w)
		if gb, wb := mustJSON(t, g), mustJSON(t, w); !bytes.Equal(gb, wb) {
			t.Errorf("signalFrame(%q, %s) = %s, encoder gives %s", tc.from, tc.data, got, want)
		}
		if m, err := DecodeServerMessage(got); err != nil || m.From != tc.from || m.Type != TypeSignal {
			t.Errorf("signalFrame(%q): decodes to %+v, %v", tc.from, m, err)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The signal fast path agrees with encoding/json on the messages it takes.
func TestDecodeSignalFastPath(t *testing.T) {
	for _, in := range []string{
		`{"type":"signal","to":"abc","data":{"sdp":"v=0\r\n","n":[1,{"x":null}]}}`,
		` {"data":{"a":"\u00e9\ud83d\ude00"},"to":"p\u0041","type":"sig\u006eal","extra":[1,2]} `,
		`{"type":"signal","to":"abc","data":{},"room":"r"}`,
	} {
		b := bytes.TrimSpace([]byte(in))
		fast, ok := decodeSignal(b)
		if !ok {
			t.Fatalf("%s: fast path refused", in)
		}
		var slow ClientMessage
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatal(err)
		}
		if fast.Type != slow.Type || fast.To != slow.To || !bytes.Equal(mustJSON(t, fast.Data), mustJSON(t, slow.Data)) {
			t.Errorf("%s: fast %+v, encoding/json %+v", in, fast, slow)
		}
	}
	for _, in := range []string{
		`{"type":"signal","to":5,"data":{}}`, `{"type":"signal","to":"","data":{}}`,
		`{"type":"signal","to":"a","data":[1]}`, `{"type":"signal","to":"a"}`, `{"type":"join","room":"r"}`,
		`{"type":"signal","to":"a","data":{}`, `{"type":"signal","to":"` + strings.Repeat("a", 65) + `","data":{}}`,
	} {
		if m, ok := decodeSignal([]byte(in)); ok {
			t.Errorf("%s: fast path took it: %+v", in, m)
		}
	}
}

func FuzzDecodeSignalFastPath(f *testing.F) {
	f.Add([]byte(`{"type":"signal","to":"abc","data":{"x":"\u00e9"}}`))
	f.Add([]byte(`{"type":"signal","to":"a\"b","data":{"x":[{}]},"to":"c"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeClientMessage(b)
		if err != nil || m.Type != TypeSignal {
			return
		}
		if !utf8.Valid(m.Data) || !json.Valid(m.Data) || m.To == "" || len(m.To) > maxIDLen {
			t.Fatalf("%q decoded to %+v", b, m)
		}
		if d := bytes.TrimSpace(m.Data); d[0] != '{' {
			t.Fatalf("%q: data is not an object: %s", b, m.Data)
		}
	})
}

// The signal fast path validates with gjson's validator (decodeSignal): on
// valid UTF-8 it must accept exactly what encoding/json accepts, or a
// frame the hub forwards could be one a browser's JSON.parse rejects.
func FuzzValidMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{
		`{"type":"signal","to":"p","data":{"a":[1,-0.5e+3,true,false,null,"\u00e9\n"]}}`,
		`{"a":01}`, `{"a":1.}`, `{"a":"\x"}`, `{"a":"` + "\t" + `"}`, `{"a":1}x`, ` {} `, `{"a":-}`,
		`{"a":"\ud800"}`, `[1,]`, `{,}`, `{"a" 1}`, `1e`, `"\u12"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !utf8.Valid(b) {
			return
		}
		if g, j := gjson.ValidBytes(b), json.Valid(b); g != j {
			t.Fatalf("%q: gjson.ValidBytes %v, json.Valid %v", b, g, j)
		}
	})
}
