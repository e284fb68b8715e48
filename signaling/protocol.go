package signaling

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"
)

// ProtocolVersion is the wire protocol version this package speaks
// (docs/protocol.md).
const ProtocolVersion = 1

// Message types. The first group is sent by clients, the second by the hub.
const (
	TypeJoin   = "join"
	TypeResume = "resume"
	TypeSignal = "signal"
	TypeLeave  = "leave"
	TypePing   = "ping"

	TypeWelcome    = "welcome"
	TypeResumed    = "resumed"
	TypePeerJoined = "peer-joined"
	TypePeerLeft   = "peer-left"
	TypeError      = "error"
	TypeICEServers = "ice-servers"
	TypePong       = "pong"
)

// Error codes carried by {"type":"error"} messages. They are stable: clients
// decide on them.
const (
	CodeBadMessage   = "bad-message"   // not JSON, unknown type, invalid field, wrong state
	CodeUnauthorized = "unauthorized"  // missing, invalid or expired token, or a token for another room
	CodeRoomFull     = "room-full"     // the room holds RoomCapacity peers already
	CodeUnknownPeer  = "unknown-peer"  // "to" names no peer of the room (after its resume grace)
	CodeRateLimited  = "rate-limited"  // too many messages; this one was dropped
	CodeTooLarge     = "too-large"     // message above MaxMessageBytes; dropped
	CodeResumeFailed = "resume-failed" // resume token unknown or its grace window is over: join again
)

// WebSocket close codes the hub uses (docs/protocol.md).
const (
	CloseNormal         = 1000 // the client closed
	ClosePolicy         = 1008 // too many bad or rate-limited messages
	CloseTooBig         = 1009 // a message above the hard size limit
	CloseServiceRestart = 1012 // the hub is draining: reconnect (and join again)
	CloseReplaced       = 4000 // the session was resumed on another connection
	CloseSlowConsumer   = 4001 // the client read too slowly; its session is gone
)

// Limits on fields, independent of configuration.
const (
	maxRoomLen  = 64
	maxIDLen    = 64
	maxTokenLen = 4096
	maxNameLen  = 64
)

// ClientMessage is one decoded message from a client. Fields not used by
// Type are empty.
type ClientMessage struct {
	Type  string `json:"type"`
	Room  string `json:"room,omitempty"`  // join
	Token string `json:"token,omitempty"` // join (JWT), resume (resume token)
	Name  string `json:"name,omitempty"`  // join, open mode only
	To    string `json:"to,omitempty"`    // signal
	// Data is the opaque JSON object of a signal, forwarded unchanged.
	Data json.RawMessage `json:"data,omitempty"`
}

// ServerMessage is one message from the hub. Fields not used by Type are
// empty and omitted on the wire.
type ServerMessage struct {
	Type string `json:"type"`
	// ID is the receiver's own id (welcome, resumed) or the peer an event is
	// about (peer-joined, peer-left).
	ID   string `json:"id,omitempty"`
	Room string `json:"room,omitempty"`
	// Peers lists the ids already in the room, oldest first (welcome).
	Peers []string `json:"peers,omitzero"`
	// Names maps peer ids to display names, for peers that have one (welcome).
	Names map[string]string `json:"names,omitempty"`
	// Name is a display name: the receiver's own in welcome, the peer's in
	// peer-joined.
	Name       string      `json:"name,omitempty"`
	ICEServers []ICEServer `json:"iceServers,omitzero"`
	// Resume is the token to resume this session with (welcome, resumed).
	Resume string `json:"resume,omitempty"`
	// ResumeGrace is how long, in milliseconds, the session waits for a
	// resume after an abnormal disconnect (welcome, resumed).
	ResumeGraceMS int64 `json:"resumeGraceMs,omitempty"`
	// Polite is true in welcome: the joiner is the polite peer towards every
	// peer already in the room.
	Polite bool            `json:"polite,omitempty"`
	From   string          `json:"from,omitempty"` // signal
	Data   json.RawMessage `json:"data,omitempty"`
	// Code and Message describe an error; Peer names the peer it is about
	// (unknown-peer).
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	Peer    string `json:"peer,omitempty"`
	// Version is the protocol version (welcome, resumed).
	Version int `json:"version,omitempty"`
	// Token is a join token the hub minted for a share link, and Expires
	// its expiry in Unix seconds (invite).
	Token   string `json:"token,omitempty"`
	Expires int64  `json:"expires,omitempty"`
}

// ErrBadMessage is wrapped by every DecodeClientMessage error.
var ErrBadMessage = errors.New("signaling: bad message")

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadMessage}, args...)...)
}

// DecodeClientMessage parses and validates one client frame. Unknown fields
// are ignored (clients may be newer); unknown types are errors. Room names
// must satisfy ValidRoomName; a signal needs a non-empty "to" and a JSON
// object in "data".
func DecodeClientMessage(b []byte) (ClientMessage, error) {
	var m ClientMessage
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return m, badf("not a JSON object")
	}
	// encoding/json passes invalid UTF-8 through json.RawMessage (signal
	// data) untouched, and browsers drop a connection that receives it:
	// such a frame must never be forwarded.
	if !utf8.Valid(b) {
		return m, badf("invalid UTF-8")
	}
	if m, ok := decodeSignal(b); ok {
		// decodeSignal's To and Data point into b.
		m.To, m.Data = strings.Clone(m.To), bytes.Clone(m.Data)
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return ClientMessage{}, badf("invalid JSON: %s", jsonErrText(err))
	}
	switch m.Type {
	case TypeJoin:
		if !ValidRoomName(m.Room) {
			return m, badf("invalid room name (1-%d characters of A-Z a-z 0-9 . _ -, starting with a letter or digit)", maxRoomLen)
		}
		if len(m.Token) > maxTokenLen {
			return m, badf("token longer than %d bytes", maxTokenLen)
		}
		if !validName(m.Name) {
			return m, badf("invalid name (at most %d printable characters)", maxNameLen)
		}
	case TypeResume:
		if m.Token == "" || len(m.Token) > maxTokenLen {
			return m, badf("resume needs a token")
		}
	case TypeSignal:
		if m.To == "" || len(m.To) > maxIDLen {
			return m, badf(`signal needs "to", a peer id`)
		}
		if d := bytes.TrimSpace(m.Data); len(d) == 0 || d[0] != '{' {
			return m, badf(`signal needs "data", a JSON object`)
		}
	case TypeLeave, TypePing, TypeInvite:
	case "":
		return m, badf(`missing "type"`)
	default:
		return m, badf("unknown type %q", truncate(m.Type, 32))
	}
	return m, nil
}

// decodeSignalMessage decodes b when it is a well-formed signal, the
// message the hub relays most, and reports false for anything else, which
// DecodeClientMessage then decodes (with its errors). It is the first thing
// a reader calls: its stack stays smaller than DecodeClientMessage's, which
// a fresh reader's stack would have to grow for.
//
//go:noinline
func decodeSignalMessage(b []byte) (ClientMessage, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' || !utf8.Valid(b) {
		return ClientMessage{}, false
	}
	return decodeSignal(b)
}

// decodeSignal is the fast path for the message the hub relays most: a
// well-formed signal. It validates b as JSON (gjson's validator, which
// accepts what encoding/json's scanner accepts, in less time) and
// picks out only "type", "to" and "data" (gjson: no reflection, no copy,
// data stays the client's bytes in b), where encoding/json.Unmarshal would scan b twice
// and decode every field by reflection (the decoding was a sixth of hub CPU
// at 5,000 msgs/s). Anything else, or anything unusual about these fields,
// reports false and goes through Unmarshal, which gives the errors. b is
// valid UTF-8.
func decodeSignal(b []byte) (ClientMessage, bool) {
	if !gjson.ValidBytes(b) { // FuzzValidMatchesEncodingJSON
		return ClientMessage{}, false
	}
	// One pass over the top-level members; the first of a repeated name
	// counts. The results point into b, not into a copy: To and Data are
	// b's bytes, which the caller must not keep past b's life (relay looks
	// To up and splices Data into a new frame at once; a copy of To was an
	// allocation per relayed message).
	var typ, to, data gjson.Result
	var seen int
	view := unsafe.String(unsafe.SliceData(b), len(b)) //nolint:gosec // G103: a read-only view of b, which outlives the parse and is not written meanwhile
	gjson.Parse(view).ForEach(func(k, v gjson.Result) bool {
		switch {
		case k.Str == "type" && !typ.Exists():
			typ, seen = v, seen+1
		case k.Str == "to" && !to.Exists():
			to, seen = v, seen+1
		case k.Str == "data" && !data.Exists():
			data, seen = v, seen+1
		}
		return seen < 3
	})
	if typ.Type != gjson.String || typ.Str != TypeSignal || to.Type != gjson.String ||
		to.Str == "" || len(to.Str) > maxIDLen || data.Type != gjson.JSON || !strings.HasPrefix(data.Raw, "{") {
		return ClientMessage{}, false
	}
	raw := unsafe.Slice(unsafe.StringData(data.Raw), len(data.Raw)) //nolint:gosec // G103: bytes of b (see view), never written
	return ClientMessage{Type: TypeSignal, To: to.Str, Data: json.RawMessage(raw)}, true
}

// DecodeServerMessage parses one hub frame (for clients). It checks only
// that the frame is a JSON object with a type.
func DecodeServerMessage(b []byte) (ServerMessage, error) {
	var m ServerMessage
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return m, badf("not a JSON object")
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return ServerMessage{}, badf("invalid JSON: %s", jsonErrText(err))
	}
	if m.Type == "" {
		return m, badf(`missing "type"`)
	}
	return m, nil
}

// ValidRoomName reports whether s is a valid room name: 1 to 64 characters
// of A-Z, a-z, 0-9, '.', '_' and '-', starting with a letter or digit.
func ValidRoomName(s string) bool {
	if len(s) == 0 || len(s) > maxRoomLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// validName accepts display names of at most maxNameLen runes and
// 4*maxNameLen bytes of valid UTF-8 without control characters (Cc),
// format characters (Cf: bidi overrides and isolates, zero-width space and
// joiners, the BOM), line and paragraph separators, surrogates,
// private-use characters or U+FFFD: nothing that renders invisibly or
// reorders the text around it.
func validName(s string) bool {
	if len(s) > 4*maxNameLen || !utf8.ValidString(s) {
		return false
	}
	n := 0
	for _, r := range s {
		if r == utf8.RuneError || unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Cs, unicode.Co) {
			return false
		}
		n++
	}
	return n <= maxNameLen
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// jsonErrText keeps decoding errors short and free of message content.
func jsonErrText(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at offset %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	}
	return "malformed"
}

// encode marshals a hub message. ServerMessage holds only marshalable
// fields and Data was validated as JSON on the way in, so failure would be a
// bug; it still never crashes the hub.
func encode(m ServerMessage) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		return []byte(`{"type":"error","code":"bad-message","message":"internal encoding error"}`)
	}
	return b
}
