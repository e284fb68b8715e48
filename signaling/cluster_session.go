package signaling

import (
	"context"
	"errors"
	"time"
)

// The hub's side of a ClusterStore: sessions that move between nodes.
// Without a cluster store (h.cluster == nil) none of this runs.

// CodeUnavailable answers a join, a resume or a signal to a peer on
// another node while the cluster store (Redis) cannot be reached. Retry
// with a backoff; signals between peers on the same node keep flowing.
const CodeUnavailable = "unavailable"

// sendUnavailable answers an operation the cluster store could not serve.
// It is the hub's trouble, not the client's: it does not count against the
// connection's error budget.
func (c *conn) sendUnavailable(msg, peer string) { c.notify(CodeUnavailable, msg, peer) }

// resumeToken returns a new resume token for peer id.
func (h *Hub) resumeToken(id string) string {
	if h.cluster != nil {
		return h.cluster.ResumeToken(id)
	}
	return newResumeToken()
}

// claim resumes, on c, a session held by another node (or parked in the
// cluster): the frames held for the peer come first, then whatever reached
// the new session while the claim ran.
func (h *Hub) claim(c *conn, token string) {
	var s *session
	held, err := h.cluster.Claim(token, func(room string, m Member) Inbox {
		s = &session{h: h, id: m.ID, room: room, name: m.Name, token: token, ip: c.ip}
		return s
	})
	switch {
	case errors.Is(err, ErrUnavailable):
		h.m.resumes.WithLabelValues("unavailable").Inc()
		c.log().Warn("resume refused: cluster store unavailable", "err", err)
		c.sendUnavailable("the hub cannot reach its cluster store: retry the resume", "")
		return
	case err != nil:
		h.m.resumes.WithLabelValues("failed").Inc()
		c.sendError(CodeResumeFailed, "no session to resume: join again", "")
		return
	}
	h.mu.Lock()
	h.sessions[token] = s
	h.mu.Unlock()
	h.m.peers.Inc()
	s.mu.Lock()
	// The frames from the cluster go first; they are not reserved under
	// the held-bytes bounds, as attach hands them to c at once.
	s.held = append(held, s.held...)
	if s.ended || s.overflowed {
		s.mu.Unlock()
		h.m.resumes.WithLabelValues("failed").Inc()
		c.sendError(CodeResumeFailed, "no session to resume: join again", "")
		return
	}
	h.m.resumes.WithLabelValues("ok").Inc()
	h.attachResumedLocked(c, s)
	s.mu.Unlock()
	c.sess = s
	c.log().Info("resumed from another node", "peer", s.id, "room", s.room, "held", len(held))
}

// HandOver implements handoverInbox: the peer resumed on another node.
// The session ends here without a leave (the room keeps the peer), an
// attached connection is replaced (4000), and the frames not yet written
// to the peer are returned in order for the new node.
func (s *session) HandOver() [][]byte {
	h := s.h
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return nil
	}
	s.ended = true
	var frames [][]byte
	if old := s.conn; old != nil {
		old.fail(CloseReplaced, "session resumed elsewhere", reasonReplaced)
		frames = drainSession(old)
		s.conn = nil
	}
	frames = append(frames, s.held...)
	s.dropHeldLocked()
	s.releaseSlotLocked()
	h.stopTimer(s.graceTimer)
	h.stopTimer(s.iceTimer)
	s.graceTimer, s.iceTimer = nil, nil
	s.mu.Unlock()
	h.mu.Lock()
	delete(h.sessions, s.token)
	h.mu.Unlock()
	h.m.peers.Dec()
	h.log.Info("session moved to another node", "peer", s.id, "room", s.room, "frames", len(frames))
	return frames
}

// holdForDrain keeps a session whose connection c closed because this
// node drains: in a cluster the peer resumes on another node, so the
// session is held (not ended) until it is claimed or parked.
func (h *Hub) holdForDrain(s *session, c *conn, reason string) bool {
	if h.cluster == nil || reason != reasonDrain {
		return false
	}
	s.mu.Lock()
	if s.conn != c || s.ended {
		s.mu.Unlock()
		return true
	}
	if !s.holdPendingLocked(drainSession(c)) {
		s.mu.Unlock()
		h.endSession(s, reasonDrain) // more than the held-bytes bounds allow
		return true
	}
	s.conn = nil
	s.gen++
	h.stopTimer(s.iceTimer)
	s.iceTimer = nil
	s.mu.Unlock()
	return true
}

// stopGrace stops the grace timer of a session waiting for a resume when
// the node drains: the session is parked in the cluster instead.
func (h *Hub) stopGrace(s *session) {
	s.mu.Lock()
	h.stopTimer(s.graceTimer)
	s.graceTimer = nil
	s.gen++
	s.mu.Unlock()
}

// parkSessions ends a drain in a cluster: it gives peers time to resume
// on other nodes (each claim hands its session over), then parks the rest
// in the cluster store, where they wait out their grace window.
func (h *Hub) parkSessions(ctx context.Context) {
	wait := h.cfg.ResumeGrace
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)/2)
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
wait:
	for h.sessionCount() > 0 {
		select {
		case <-deadline.C:
			break wait
		case <-poll.C:
		}
	}
	h.mu.Lock()
	rest := make([]*session, 0, len(h.sessions))
	for _, s := range h.sessions {
		rest = append(rest, s)
	}
	h.mu.Unlock()
	for _, s := range rest {
		s.mu.Lock()
		if s.ended {
			s.mu.Unlock()
			continue
		}
		s.ended = true
		held := s.held
		s.dropHeldLocked()
		s.releaseSlotLocked()
		h.stopTimer(s.graceTimer)
		h.stopTimer(s.iceTimer)
		s.graceTimer, s.iceTimer = nil, nil
		s.mu.Unlock()
		h.mu.Lock()
		delete(h.sessions, s.token)
		h.mu.Unlock()
		h.m.peers.Dec()
		if err := h.cluster.Park(s.id, held); err != nil {
			h.log.Warn("drain: parking a session failed; the cluster reports its peer left after the node TTL and grace", "peer", s.id, "err", err)
			continue
		}
		h.log.Info("drain: session parked for a resume on another node", "peer", s.id, "room", s.room, "held", len(held))
	}
}

func (h *Hub) sessionCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}
