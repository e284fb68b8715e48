package signaling

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// minICERefresh is the shortest delay before re-sending ICE servers, so a
// misconfigured ICEServers (expiry in the past) cannot loop. Tests lower it.
var minICERefresh = time.Second

// session is a peer in a room. It outlives connections: after an abnormal
// disconnect it holds the frames addressed to the peer for ResumeGrace, and
// a resume attaches a new connection to it.
type session struct {
	h     *Hub
	id    string
	room  string
	name  string
	token string // resume token

	mu         sync.Mutex
	conn       *conn      // nil before welcome and while waiting for a resume
	ip         netip.Addr // client address of the latest connection
	held       [][]byte   // frames waiting for a connection, oldest first
	heldBytes  int        // their size, reserved with Hub.reserveHeld
	slot       bool       // while waiting: holds a place under the connection caps
	ended      bool
	overflowed bool
	gen        int // bumped on every attach and detach; stale timers check it
	graceTimer *time.Timer
	iceTimer   *time.Timer
}

// errPeerGone is what Deliver returns for a peer on its way out: the
// sender did nothing wrong, so it costs no error budget.
var errPeerGone = fmt.Errorf("%w: leaving", ErrUnknownPeer)

// Deliver implements Inbox. It runs under the store's lock: no blocking,
// no calls into the store.
func (s *session) Deliver(frame []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.overflowed {
		return errPeerGone
	}
	if s.conn != nil {
		switch s.conn.enqueue(outFrame{b: frame, fromSession: true}) {
		case enqOK:
			return nil
		case enqFull:
			// The connection is failing as a slow consumer; the session ends
			// when its reader exits. This frame is lost with it.
			return nil
		}
		// enqClosing: the connection is going; hold until we know whether
		// the peer may resume.
	}
	if !s.holdLocked(frame) {
		s.overflowLocked()
		return errPeerGone
	}
	return nil
}

// holdLocked keeps frame for a resume if it fits the held-bytes bounds.
func (s *session) holdLocked(frame []byte) bool {
	if s.heldBytes+len(frame) > s.h.cfg.HeldBytes || !s.h.reserveHeld(s.ip, len(frame)) {
		return false
	}
	s.held = append(s.held, frame)
	s.heldBytes += len(frame)
	return true
}

// dropHeldLocked forgets the held frames and their reservation.
func (s *session) dropHeldLocked() {
	s.h.releaseHeld(s.ip, s.heldBytes)
	s.held, s.heldBytes = nil, 0
}

// overflowLocked removes a peer with more to hold than fits: now, rather
// than resumed with a gap in its signaling.
func (s *session) overflowLocked() {
	s.overflowed = true
	s.dropHeldLocked()
	if s.conn == nil {
		s.h.stopTimer(s.graceTimer)
		gen := s.gen
		s.graceTimer = s.h.afterFunc(0, func() { s.h.graceExpired(s, gen) })
	}
}

// attachLocked makes c the session's connection and flushes the held
// frames into it. s.mu must be held.
func (s *session) attachLocked(c *conn) {
	s.conn = c
	s.gen++
	held := s.held
	s.dropHeldLocked()
	s.releaseSlotLocked()
	s.ip = c.ip
	for _, f := range held {
		if c.enqueue(outFrame{b: f, fromSession: true}) != enqOK {
			break
		}
	}
}

// releaseSlotLocked gives back the place a waiting session held under the
// connection caps.
func (s *session) releaseSlotLocked() {
	if !s.slot {
		return
	}
	s.slot = false
	s.h.mu.Lock()
	s.h.releaseSlotLocked(s.ip)
	s.h.mu.Unlock()
}

// scheduleICELocked arranges for fresh ICE servers before exp.
func (s *session) scheduleICELocked(issued, exp time.Time) {
	s.h.stopTimer(s.iceTimer)
	s.iceTimer = nil
	if exp.IsZero() || s.ended {
		return
	}
	d := max(exp.Sub(issued)*4/5, minICERefresh)
	gen := s.gen
	s.iceTimer = s.h.afterFunc(d, func() { s.h.refreshICE(s, gen) })
}

// join handles a join message on a connection without a session.
func (h *Hub) join(c *conn, msg ClientMessage) {
	name := msg.Name
	if h.cfg.TokenSecret != nil {
		claims, err := verifyToken(h.cfg.TokenSecret, msg.Token, msg.Room, h.cfg.now(), h.cfg.MaxTokenLifetime)
		if err != nil {
			c.log().Info("join refused", "reason", "unauthorized", "err", err)
			c.sendError(CodeUnauthorized, badToken(err), "")
			return
		}
		if claims.Name != "" {
			name = claims.Name // a token's name wins over the one the client asks for
		}
	}
	id := newPeerID()
	s := &session{h: h, id: id, room: msg.Room, name: name, token: h.resumeToken(id), ip: c.ip}
	announce := encode(ServerMessage{Type: TypePeerJoined, ID: s.id, Name: name})
	others, err := h.store.Join(msg.Room, Member{ID: s.id, Name: name, Token: s.token}, h.cfg.RoomCapacity, s, announce)
	if err != nil {
		if errors.Is(err, ErrRoomFull) {
			c.sendError(CodeRoomFull, "the room is full", "")
			return
		}
		if errors.Is(err, ErrUnavailable) {
			c.log().Warn("join refused: cluster store unavailable", "err", err)
			c.sendUnavailable("the hub cannot reach its cluster store: retry the join", "")
			return
		}
		c.log().Error("join failed", "err", err)
		c.sendError(CodeBadMessage, "join failed", "")
		return
	}
	h.mu.Lock()
	h.sessions[s.token] = s
	h.mu.Unlock()
	h.m.peers.Inc()

	issued := h.cfg.now()
	servers, exp := h.iceServers(s.id)
	w := ServerMessage{
		Type: TypeWelcome, Version: ProtocolVersion, ID: s.id, Room: s.room, Name: name,
		Peers: make([]string, 0, len(others)), ICEServers: servers, Resume: s.token,
		Polite: len(others) > 0,
	}
	if h.cfg.ResumeGrace > 0 {
		w.ResumeGraceMS = h.cfg.ResumeGrace.Milliseconds()
	}
	for _, o := range others {
		w.Peers = append(w.Peers, o.ID)
		if o.Name != "" {
			if w.Names == nil {
				w.Names = make(map[string]string)
			}
			w.Names[o.ID] = o.Name
		}
	}
	// Welcome goes first, and the session is attached in the same step, so
	// neither a held frame nor a racing resume can come between.
	s.mu.Lock()
	c.reply(w)
	if !s.ended {
		s.attachLocked(c)
		s.scheduleICELocked(issued, exp)
	}
	s.mu.Unlock()
	c.sess = s
	c.log().Info("joined", "peer", s.id, "room", s.room, "peers", len(others)+1)
}

// resume handles a resume message on a connection without a session.
func (h *Hub) resume(c *conn, token string) {
	h.mu.Lock()
	s := h.sessions[token]
	h.mu.Unlock()
	if s == nil && h.cluster != nil && h.cfg.ResumeGrace >= 0 {
		h.claim(c, token) // held by another node, or parked
		return
	}
	if s == nil || h.cfg.ResumeGrace < 0 {
		h.m.resumes.WithLabelValues("failed").Inc()
		c.sendError(CodeResumeFailed, "no session to resume: join again", "")
		return
	}
	s.mu.Lock()
	if s.ended || s.overflowed {
		s.mu.Unlock()
		h.m.resumes.WithLabelValues("failed").Inc()
		c.sendError(CodeResumeFailed, "no session to resume: join again", "")
		return
	}
	if old := s.conn; old != nil {
		// The client noticed a broken connection before the hub did. Move
		// what the old connection has not sent yet, then retire it.
		old.fail(CloseReplaced, "session resumed elsewhere", reasonReplaced)
		// Its reader finds s.conn != old when it exits and leaves s alone.
		// attachLocked moves these frames to the new connection straight
		// away: they are not held, so they take no reservation.
		s.held = append(drainSession(old), s.held...)
	}
	h.stopTimer(s.graceTimer)
	s.graceTimer = nil
	h.m.resumes.WithLabelValues("ok").Inc()
	h.attachResumedLocked(c, s)
	s.mu.Unlock()
	c.sess = s
	c.log().Info("resumed", "peer", s.id, "room", s.room)
}

// attachResumedLocked answers a resume with "resumed" and attaches c,
// which flushes the held frames after it. s.mu must be held.
func (h *Hub) attachResumedLocked(c *conn, s *session) {
	issued := h.cfg.now()
	servers, exp := h.iceServers(s.id)
	c.reply(ServerMessage{
		Type: TypeResumed, Version: ProtocolVersion, ID: s.id, Room: s.room, Name: s.name,
		ICEServers: servers, Resume: s.token, ResumeGraceMS: max(h.cfg.ResumeGrace.Milliseconds(), 0),
	})
	s.attachLocked(c)
	s.scheduleICELocked(issued, exp)
}

// drainSession takes the session frames c has not written yet.
func drainSession(c *conn) [][]byte {
	c.mu.Lock()
	q := c.queue
	c.queue, c.qbytes = nil, 0
	c.mu.Unlock()
	var out [][]byte
	for _, f := range q {
		if f.fromSession {
			out = append(out, f.b)
		}
	}
	return out
}

// detach settles s after its connection c ended for reason: a terminal
// reason (or a closed hub, or resuming disabled) ends the session, any
// other starts the grace window.
func (h *Hub) detach(s *session, c *conn, reason string) {
	if reason == reasonReplaced || h.holdForDrain(s, c, reason) {
		return
	}
	s.mu.Lock()
	if s.conn != c || s.ended {
		s.mu.Unlock()
		return
	}
	pending := drainSession(c)
	if terminal(reason) || h.cfg.ResumeGrace < 0 || s.overflowed || !s.holdPendingLocked(pending) {
		s.mu.Unlock()
		h.endSession(s, reason)
		return
	}
	h.mu.Lock()
	closed := h.closed
	if !closed {
		s.conn = nil
		s.gen++
		// The waiting session keeps its connection's place under the caps
		// (even past them: it had the place already).
		s.slot = true
		h.takeSlotLocked(s.ip)
		h.stopTimer(s.iceTimer)
		s.iceTimer = nil
		gen := s.gen
		s.graceTimer = h.afterFunc(h.cfg.ResumeGrace, func() { h.graceExpired(s, gen) })
	}
	h.mu.Unlock()
	s.mu.Unlock()
	if closed {
		h.endSession(s, reasonDrain)
		return
	}
	c.log().Info("peer disconnected, waiting for resume", "peer", s.id, "reason", reason, "grace", h.cfg.ResumeGrace)
	if h.onDetach != nil {
		h.onDetach(s.id)
	}
}

// holdPendingLocked puts the frames a broken connection had not sent in
// front of the held ones, within the held-bytes bounds.
func (s *session) holdPendingLocked(pending [][]byte) bool {
	later, laterBytes := s.held, s.heldBytes
	s.held, s.heldBytes = nil, 0
	for _, f := range append(pending, later...) {
		if !s.holdLocked(f) {
			s.dropHeldLocked()
			s.h.releaseHeld(s.ip, laterBytes)
			return false
		}
	}
	s.h.releaseHeld(s.ip, laterBytes)
	return true
}

func (h *Hub) graceExpired(s *session, gen int) {
	s.mu.Lock()
	stale := s.gen != gen || s.conn != nil || s.ended
	s.graceTimer = nil
	s.mu.Unlock()
	if !stale {
		h.endSession(s, "resume-timeout")
	}
}

func (h *Hub) refreshICE(s *session, gen int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.iceTimer = nil
	if s.gen != gen || s.conn == nil || s.ended {
		return // a resume sends fresh servers and reschedules
	}
	issued := h.cfg.now()
	servers, exp := h.iceServers(s.id)
	if s.conn.enqueue(outFrame{b: encode(ServerMessage{Type: TypeICEServers, ICEServers: servers})}) == enqOK {
		h.m.iceRefreshes.Inc()
	}
	s.scheduleICELocked(issued, exp)
}

// endSession removes s from its room (peer-left to the others) and forgets
// it. Idempotent.
func (h *Hub) endSession(s *session, reason string) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	h.stopTimer(s.graceTimer)
	h.stopTimer(s.iceTimer)
	s.graceTimer, s.iceTimer = nil, nil
	s.dropHeldLocked()
	s.releaseSlotLocked()
	s.mu.Unlock()
	h.recentlyLeft.add(s.id, h.cfg.now())
	h.mu.Lock()
	delete(h.sessions, s.token)
	h.mu.Unlock()
	h.store.Leave(s.room, s.id, encode(ServerMessage{Type: TypePeerLeft, ID: s.id}))
	h.m.peers.Dec()
	h.log.Info("left", "peer", s.id, "room", s.room, "reason", reason)
}

// handle dispatches one client message.
func (h *Hub) handle(c *conn, data []byte) {
	msg, err := DecodeClientMessage(data)
	if err != nil {
		h.m.receivedType("")
		c.sendError(CodeBadMessage, badText(err), "")
		return
	}
	h.m.receivedType(msg.Type)
	switch msg.Type {
	case TypeJoin:
		if c.sess != nil {
			c.sendError(CodeBadMessage, "already in a room: leave first", "")
			return
		}
		h.join(c, msg)
	case TypeResume:
		if c.sess != nil {
			c.sendError(CodeBadMessage, "already in a room", "")
			return
		}
		h.resume(c, msg.Token)
	case TypeSignal:
		h.relay(c, msg)
	case TypeLeave:
		s := c.sess
		if s == nil {
			c.sendError(CodeBadMessage, "not in a room", "")
			return
		}
		c.sess = nil
		s.mu.Lock()
		if s.conn == c {
			s.conn = nil
		}
		s.mu.Unlock()
		h.endSession(s, "leave")
	case TypePing:
		c.reply(ServerMessage{Type: TypePong})
	case TypeInvite:
		h.invite(c)
	}
}

// relay forwards a signal from c's peer to msg.To. msg.To and msg.Data
// point into the read buffer (decodeSignal): nothing keeps them past the
// return.
//
//go:noinline
func (h *Hub) relay(c *conn, msg ClientMessage) {
	s := c.sess
	if s == nil {
		c.sendError(CodeBadMessage, "join a room first", "")
		return
	}
	if msg.To == s.id {
		c.sendError(CodeBadMessage, "cannot signal yourself", "")
		return
	}
	frame := signalFrame(s.id, msg.Data)
	if err := h.store.Send(s.room, msg.To, frame); err != nil {
		if errors.Is(err, ErrUnavailable) {
			c.sendUnavailable("the peer is on another node and the hub cannot reach its cluster store", msg.To)
			return
		}
		if errors.Is(err, errPeerGone) || h.recentlyLeft.has(msg.To) {
			// The peer left while this signal was on its way: the
			// sender's peer-left is in flight, no fault of its own.
			c.notify(CodeUnknownPeer, "the peer has left the room", msg.To)
			return
		}
		c.sendError(CodeUnknownPeer, "no such peer in the room", msg.To)
	}
}

// signalFrame is the frame a signal with data from peer from becomes:
// {"type":"signal","from":<from>,"data":<data>}, the same fields in the
// same order as encode(ServerMessage{Type: TypeSignal, From: from, Data:
// data}) gives. data is spliced in as the client sent it: DecodeClientMessage
// has validated it as a JSON object of valid UTF-8, so it needs no second
// pass through the encoder (8% of hub CPU at 5,000 msgs/s when it had one).
func signalFrame(from string, data json.RawMessage) []byte {
	const head, mid = `{"type":"signal","from":`, `,"data":`
	b := make([]byte, 0, len(head)+len(from)+2+len(mid)+len(data)+1)
	b = append(b, head...)
	b = appendJSONString(b, from)
	b = append(b, mid...)
	b = append(b, data...)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string. Peer ids are base64url and
// take the fast path; anything else goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// badToken is the client-facing text of a token failure: specific enough
// to debug, never echoing the token.
func badToken(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, errUnauthorized) && len(msg) > len(errUnauthorized.Error())+2:
		return msg[len(errUnauthorized.Error())+2:]
	}
	return "invalid token"
}
