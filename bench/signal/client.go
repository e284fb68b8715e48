//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// Targets.
const (
	targetHub    = "hub"    // our signaling hub: rooms, ids assigned by the hub
	targetPeerJS = "peerjs" // PeerJS server: no rooms, ids chosen by the client
)

// peerJSHeartbeat is how often PeerJS clients send {"type":"HEARTBEAT"}: the
// PeerJS browser client's default pingInterval. The server drops a client
// whose last heartbeat is older than alive_timeout (90 s in peer 1.0.2).
const peerJSHeartbeat = 5 * time.Second

// bconn is one load-generator connection. Writes go through mu (gorilla
// allows one writer at a time); the reader goroutine owns everything below
// the line.
type bconn struct {
	ws *websocket.Conn
	id string // own peer id

	mu sync.Mutex

	peersMu sync.Mutex
	peers   []string
	next    int

	dead  atomic.Bool
	since time.Time // when the connection was ready
	// reader-owned
	lat    []int64 // one-way latencies, ns
	rtt    []int64 // round trips, ns
	recv   int64   // signals received while recording
	errs   int64   // error or other unexpected frames while recording
	errMsg string  // the first of them
}

func (c *bconn) write(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

func (c *bconn) addPeer(id string) {
	c.peersMu.Lock()
	c.peers = append(c.peers, id)
	c.peersMu.Unlock()
}

func (c *bconn) npeers() int {
	c.peersMu.Lock()
	defer c.peersMu.Unlock()
	return len(c.peers)
}

// nextPeer returns the peers in turn.
func (c *bconn) nextPeer() string {
	c.peersMu.Lock()
	defer c.peersMu.Unlock()
	p := c.peers[c.next%len(c.peers)]
	c.next++
	return p
}

// sayGoodbye sends a close frame (1000), so the server sees a clean leave:
// the hub then ends the session at once instead of keeping it for a
// resume.
func (c *bconn) sayGoodbye() {
	_ = c.ws.WriteControl(websocket.CloseMessage, // best effort
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
}

// closeAll says goodbye on every connection, gives the server a moment to
// act on it, then resets the sockets.
func closeAll(conns []*bconn) {
	for _, c := range conns {
		c.sayGoodbye()
	}
	time.Sleep(500 * time.Millisecond)
	for _, c := range conns {
		c.closeRST()
	}
}

// runPrefix makes the room names and PeerJS ids of one run unlike those of
// earlier runs against the same server.
func runPrefix() string { return strconv.FormatInt(time.Now().UnixNano()%(36*36*36*36), 36) }

// closeRST closes the socket with a reset so that neither side keeps the
// port in TIME_WAIT: the next run can reuse the source addresses at once.
func (c *bconn) closeRST() {
	if tc, ok := c.ws.NetConn().(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.ws.Close()
}

// client holds the dialing side: the server, the source addresses and the
// frame formats of the target.
type client struct {
	target  string
	baseURL string // ws://host:port
	key     string // PeerJS key
	dialers []*websocket.Dialer
	ndial   atomic.Uint64
}

func newClient(target, addr string, srcBase string, srcCount int) (*client, error) {
	if target != targetHub && target != targetPeerJS {
		return nil, fmt.Errorf("-target %q: want %s or %s", target, targetHub, targetPeerJS)
	}
	base := net.ParseIP(srcBase).To4()
	if base == nil || !base.IsLoopback() {
		return nil, fmt.Errorf("-src %q: want a 127.x.y.z address", srcBase)
	}
	if srcCount < 1 || int(base[3])+srcCount > 255 {
		return nil, fmt.Errorf("-src-count %d: must stay within %s/24", srcCount, base)
	}
	pool := &sync.Pool{} // write buffers are shared: idle connections hold none
	cl := &client{target: target, baseURL: "ws://" + addr, key: "peerjs"}
	for i := range srcCount {
		ip := net.IPv4(base[0], base[1], base[2], base[3]+byte(i))
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 15 * time.Second}
		cl.dialers = append(cl.dialers, &websocket.Dialer{
			NetDialContext:   nd.DialContext,
			HandshakeTimeout: 15 * time.Second,
			ReadBufferSize:   1024,
			WriteBufferSize:  1024,
			WriteBufferPool:  pool,
		})
	}
	return cl, nil
}

// dial opens one connection. For PeerJS, id is the id to register (PeerJS
// ids are chosen by clients); for the hub it is ignored.
func (cl *client) dial(ctx context.Context, id string) (*bconn, error) {
	d := cl.dialers[cl.ndial.Add(1)%uint64(len(cl.dialers))]
	u := cl.baseURL + "/ws"
	if cl.target == targetPeerJS {
		u = cl.baseURL + "/peerjs?" + url.Values{"key": {cl.key}, "id": {id}, "token": {"bench"}}.Encode()
	}
	ws, resp, err := d.DialContext(ctx, u, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: %w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	c := &bconn{ws: ws}
	if cl.target == targetPeerJS {
		c.id = id
		m, err := readJSON(ws)
		if err != nil {
			c.closeRST()
			return nil, err
		}
		if m.Type != "OPEN" {
			c.closeRST()
			return nil, fmt.Errorf("peerjs: got %s (%s) instead of OPEN", m.Type, m.Payload.Msg)
		}
	}
	return c, nil
}

// join joins a hub room and waits for the welcome.
func (cl *client) join(c *bconn, room string) error {
	if err := c.write([]byte(`{"type":"join","room":"` + room + `"}`)); err != nil {
		return err
	}
	for {
		m, err := readJSON(c.ws)
		if err != nil {
			return err
		}
		switch m.Type {
		case "welcome":
			c.id = m.ID
			for _, p := range m.Peers {
				c.addPeer(p)
			}
			return nil
		case "error":
			return fmt.Errorf("join %s: %s: %s", room, m.Code, m.Message)
		}
	}
}

// anyMsg is the union of the handshake messages of both servers.
type anyMsg struct {
	Type    string   `json:"type"`
	ID      string   `json:"id"`
	Peers   []string `json:"peers"`
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Payload struct {
		Msg string `json:"msg"`
	} `json:"payload"`
}

func readJSON(ws *websocket.Conn) (anyMsg, error) {
	var m anyMsg
	_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	defer func() { _ = ws.SetReadDeadline(time.Time{}) }()
	_, b, err := ws.ReadMessage()
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("undecodable frame: %w", err)
	}
	return m, nil
}

// signalFrame builds a relayed message to peer to carrying the send time
// bt and, in an echo, the original send time bo (0 in a first message).
func (cl *client) signalFrame(buf []byte, to string, bt, bo int64) []byte {
	if cl.target == targetPeerJS {
		buf = append(buf, `{"type":"OFFER","dst":"`...)
		buf = append(buf, to...)
		buf = append(buf, `","payload":{"bt":`...)
	} else {
		buf = append(buf, `{"type":"signal","to":"`...)
		buf = append(buf, to...)
		buf = append(buf, `","data":{"bt":`...)
	}
	buf = strconv.AppendInt(buf, bt, 10)
	buf = append(buf, `,"bo":`...)
	buf = strconv.AppendInt(buf, bo, 10)
	return append(buf, `}}`...)
}

var heartbeatFrame = []byte(`{"type":"HEARTBEAT"}`)

// peerJSHeartbeats sends PeerJS's HEARTBEAT on every live connection that
// conns returns, every peerJSHeartbeat, until ctx ends: without them the
// PeerJS server drops its clients. (The hub's own pings are answered by
// gorilla's default ping handler.)
func peerJSHeartbeats(ctx context.Context, conns func() []*bconn) {
	t := time.NewTicker(peerJSHeartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, c := range conns() {
			if !c.dead.Load() {
				_ = c.write(heartbeatFrame) // a dead one is seen by its reader
			}
		}
	}
}

// parsed is what the reader needs from a received frame.
type parsed struct {
	signal bool
	from   string
	bt, bo int64
	joined string // hub peer-joined id
	bad    bool   // error or unexpected frame
}

var (
	keyBT     = []byte(`"bt":`)
	keyBO     = []byte(`"bo":`)
	keyFrom   = []byte(`"from":"`)
	keySrc    = []byte(`"src":"`)
	keyID     = []byte(`"id":"`)
	hubJoined = []byte(`"type":"peer-joined"`)
	hubLeft   = []byte(`"type":"peer-left"`)
	hubICE    = []byte(`"type":"ice-servers"`)
)

// parse reads a frame without a JSON decoder: the load generator must cost
// the machine much less than the servers it measures.
func (cl *client) parse(b []byte) parsed {
	var p parsed
	if i := bytes.Index(b, keyBT); i >= 0 {
		p.signal = true
		p.bt = atoiAt(b, i+len(keyBT))
		if j := bytes.Index(b, keyBO); j >= 0 {
			p.bo = atoiAt(b, j+len(keyBO))
		}
		k := keyFrom
		if cl.target == targetPeerJS {
			k = keySrc
		}
		p.from = strAt(b, k)
		p.signal = p.from != ""
		p.bad = !p.signal
		return p
	}
	if cl.target == targetHub {
		switch {
		case bytes.Contains(b, hubJoined):
			p.joined = strAt(b, keyID)
			return p
		case bytes.Contains(b, hubLeft), bytes.Contains(b, hubICE):
			return p
		}
	}
	p.bad = true
	return p
}

func atoiAt(b []byte, i int) int64 {
	var n int64
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + int64(b[i]-'0')
	}
	return n
}

func strAt(b, key []byte) string {
	i := bytes.Index(b, key)
	if i < 0 {
		return ""
	}
	rest := b[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// raiseNoFile lifts the open-file limit as far as the process may.
func raiseNoFile(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	n := lim
	n.Cur = want
	if n.Max < want {
		n.Max = want // needs CAP_SYS_RESOURCE
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &n); err != nil {
		lim.Cur = lim.Max
		if err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err2 != nil {
			return 0, err
		}
		return lim.Cur, fmt.Errorf("raising the open-file limit to %d: %w (kept %d)", want, err, lim.Cur)
	}
	return want, nil
}

// waitListening waits until addr accepts TCP connections.
func waitListening(ctx context.Context, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %s: %w", addr, within, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
