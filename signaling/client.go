package signaling

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Error is an {"type":"error"} message from the hub, returned by Client
// methods that wait for an answer.
type Error struct {
	Code    string // one of the Code* constants
	Message string
	Peer    string // the peer it is about (unknown-peer)
}

func (e *Error) Error() string { return "signaling: " + e.Code + ": " + e.Message }

// ErrClosed is returned by Client methods after the connection ended; Err
// tells why.
var ErrClosed = errors.New("signaling: connection closed")

// Client is a small Go client for the hub's protocol, for tests,
// benchmarks and Go programs. Messages from the hub arrive on Messages (or
// through Recv) in order; a reader that stops consuming them eventually
// stops the connection's reading too, like a slow browser.
type Client struct {
	ws     *websocket.Conn
	msgs   chan ServerMessage
	done   chan struct{}
	closed chan struct{}

	writeMu   sync.Mutex
	closeOnce sync.Once
	err       error // set before done is closed
}

type dialOptions struct {
	header  http.Header
	dialer  *websocket.Dialer
	buffer  int
	noPongs bool // tests: a client that stops answering pings
}

// DialOption configures Dial.
type DialOption func(*dialOptions)

// WithHeader adds request headers to the WebSocket handshake.
func WithHeader(h http.Header) DialOption {
	return func(o *dialOptions) {
		for k, v := range h {
			o.header[k] = append(o.header[k], v...)
		}
	}
}

// WithOrigin sets the Origin header, as a browser would.
func WithOrigin(origin string) DialOption {
	return func(o *dialOptions) { o.header.Set("Origin", origin) }
}

// WithDialer uses d (TLS settings, proxies, NetDialContext) instead of
// websocket.DefaultDialer.
func WithDialer(d *websocket.Dialer) DialOption { return func(o *dialOptions) { o.dialer = d } }

// WithBuffer sets how many received messages wait for the caller before
// the client stops reading the socket. Default 256.
func WithBuffer(n int) DialOption { return func(o *dialOptions) { o.buffer = max(n, 1) } }

// Dial connects to the hub's WebSocket at url (ws://, wss://, or http(s)://
// which is rewritten to ws(s)://; a URL without a path gets /ws).
func Dial(ctx context.Context, url string, opts ...DialOption) (*Client, error) {
	o := dialOptions{header: http.Header{}, dialer: websocket.DefaultDialer, buffer: 256}
	for _, f := range opts {
		f(&o)
	}
	url = wsURL(url)
	ws, resp, err := o.dialer.DialContext(ctx, url, o.header)
	if resp != nil {
		resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("signaling: dial %s: %w (HTTP %d)", url, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("signaling: dial %s: %w", url, err)
	}
	if o.noPongs {
		ws.SetPingHandler(func(string) error { return nil })
	}
	c := &Client{
		ws:     ws,
		msgs:   make(chan ServerMessage, o.buffer),
		done:   make(chan struct{}),
		closed: make(chan struct{}),
	}
	go c.read()
	return c, nil
}

func wsURL(u string) string {
	switch {
	case strings.HasPrefix(u, "http://"):
		u = "ws://" + u[len("http://"):]
	case strings.HasPrefix(u, "https://"):
		u = "wss://" + u[len("https://"):]
	}
	if i := strings.Index(u, "://"); i >= 0 && !strings.Contains(u[i+3:], "/") {
		u += "/ws"
	}
	return u
}

func (c *Client) read() {
	// done closes before msgs: whoever sees msgs closed can read Err.
	defer close(c.msgs)
	defer close(c.done)
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			c.err = err
			c.ws.Close()
			return
		}
		m, err := DecodeServerMessage(b)
		if err != nil {
			continue // not ours to judge; the hub never sends these
		}
		select {
		case c.msgs <- m:
		case <-c.closed:
			c.err = ErrClosed
			return
		}
	}
}

// Messages returns the channel of messages from the hub. It is closed when
// the connection ends.
func (c *Client) Messages() <-chan ServerMessage { return c.msgs }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err reports why the connection ended (a *websocket.CloseError carries
// the hub's close code), or nil while it is open.
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// CloseCode returns the close code the hub sent, or 0.
func (c *Client) CloseCode() int {
	var ce *websocket.CloseError
	if errors.As(c.Err(), &ce) {
		return ce.Code
	}
	return 0
}

// Recv returns the next message from the hub.
func (c *Client) Recv(ctx context.Context) (ServerMessage, error) {
	select {
	case m, ok := <-c.msgs:
		if !ok {
			return ServerMessage{}, fmt.Errorf("%w: %v", ErrClosed, c.err)
		}
		return m, nil
	case <-ctx.Done():
		return ServerMessage{}, ctx.Err()
	}
}

// Send writes one client message as is.
func (c *Client) Send(m ClientMessage) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("signaling: encoding %s: %w", m.Type, err)
	}
	return c.SendRaw(b)
}

// SendRaw writes one text frame as is (tests of the hub's validation).
func (c *Client) SendRaw(b []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("signaling: write: %w", err)
	}
	return nil
}

// Join joins room with an optional token (a JWT when the hub requires
// one) and returns the welcome message, or an *Error. Call it before
// reading Messages: it consumes messages up to the answer.
func (c *Client) Join(ctx context.Context, room, token string) (ServerMessage, error) {
	return c.JoinAs(ctx, room, token, "")
}

// JoinAs is Join with a display name, which an open hub accepts; a hub
// with tokens takes the name from the token instead.
func (c *Client) JoinAs(ctx context.Context, room, token, name string) (ServerMessage, error) {
	if err := c.Send(ClientMessage{Type: TypeJoin, Room: room, Token: token, Name: name}); err != nil {
		return ServerMessage{}, err
	}
	return c.await(ctx, TypeWelcome)
}

// Resume resumes a session on this new connection with the resume token
// from its welcome. It returns the "resumed" message (after which the
// messages held for the peer follow), or an *Error with code
// resume-failed when the grace window is over.
func (c *Client) Resume(ctx context.Context, token string) (ServerMessage, error) {
	if err := c.Send(ClientMessage{Type: TypeResume, Token: token}); err != nil {
		return ServerMessage{}, err
	}
	return c.await(ctx, TypeResumed)
}

func (c *Client) await(ctx context.Context, typ string) (ServerMessage, error) {
	for {
		m, err := c.Recv(ctx)
		if err != nil {
			return m, err
		}
		switch m.Type {
		case typ:
			return m, nil
		case TypeError:
			return m, &Error{Code: m.Code, Message: m.Message, Peer: m.Peer}
		}
	}
}

// Signal sends data (a JSON object: a struct, a map or a json.RawMessage)
// to peer to.
func (c *Client) Signal(to string, data any) error {
	raw, ok := data.(json.RawMessage)
	if !ok {
		b, err := json.Marshal(data)
		if err != nil {
			return fmt.Errorf("signaling: encoding signal data: %w", err)
		}
		raw = b
	}
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		return errors.New("signaling: signal data must be a JSON object")
	}
	return c.Send(ClientMessage{Type: TypeSignal, To: to, Data: raw})
}

// Leave leaves the room; the connection stays open for another join.
func (c *Client) Leave() error { return c.Send(ClientMessage{Type: TypeLeave}) }

// Close closes the connection with 1000, which the hub takes as leaving
// the room. It waits briefly for the hub's answer.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.writeMu.Lock()
		_ = c.ws.WriteControl(websocket.CloseMessage, // best effort
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		c.writeMu.Unlock()
		close(c.closed)
		select {
		case <-c.done:
		case <-time.After(time.Second):
		}
		c.ws.Close()
	})
	<-c.done
	return nil
}
