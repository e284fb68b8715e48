package signaling

// The node's heartbeat: liveness in Redis, reaping of dead nodes'
// sessions, and recovery after an outage.

import (
	"context"
	"time"
)

// tick runs one heartbeat; stop marks the node dead instead.
func (s *RedisStore) tick(ctx context.Context, stop bool) (wasReaped bool, err error) {
	dead := "0"
	if stop {
		dead = "1"
	}
	seen := "0"
	if s.sawBoot.Load() {
		seen = "1"
	}
	res, err := scriptTick.Run(ctx, s.rdb, nil, s.args(s.node, s.cfg.ResumeGrace.Milliseconds(), dead, seen)...).Int64Slice()
	if err != nil {
		return false, err
	}
	s.sawBoot.Store(true)
	if len(res) == 3 {
		if res[0] > 0 {
			s.log.Info("redis: reaped silent nodes; their peers wait for a resume", "nodes", res[0])
		}
		s.m.reapedSessions.Add(float64(res[1]))
		return res[2] == 1, nil
	}
	return false, nil
}

// heartbeat renews the node's liveness, reaps, and after an outage puts
// the node's sessions back into Redis.
func (s *RedisStore) heartbeat() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.Heartbeat)
	defer t.Stop()
	refreshEvery := max(int(s.keyTTL()/s.cfg.Heartbeat/4), 1)
	for n := 0; ; n++ {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Heartbeat)
		reaped, err := s.tick(ctx, false)
		s.mu.Lock()
		wasDown := s.down
		pending := len(s.pendingLeaves) > 0
		s.down = err != nil
		s.reaped = s.reaped || reaped
		s.mu.Unlock()
		switch {
		case err != nil:
			s.m.up.Set(0)
			if !wasDown {
				s.log.Error("redis unreachable: joins, resumes and signals to other nodes fail until it returns", "err", err)
			}
		case wasDown || reaped || pending:
			s.m.up.Set(1)
			rctx, rcancel := context.WithTimeout(s.ctx, 30*time.Second)
			s.recover(rctx, wasDown || reaped)
			rcancel()
		default:
			s.m.up.Set(1)
			if n%refreshEvery == 0 {
				s.refresh(ctx)
			}
		}
		cancel()
	}
}

// recover re-registers every session on this node (reregister: after an
// outage or after being reaped) and replays the leaves made while Redis
// was away.
func (s *RedisStore) recover(ctx context.Context, reregister bool) {
	s.mu.Lock()
	peers := make([]*localPeer, 0, len(s.local))
	for _, p := range s.local {
		if reregister {
			peers = append(peers, p)
		}
	}
	leaves := s.pendingLeaves
	s.pendingLeaves = nil
	announced := s.reaped
	s.reaped = false
	s.mu.Unlock()
	flag := "0"
	if announced {
		flag = "1"
	}
	for _, p := range peers {
		joined := encode(ServerMessage{Type: TypePeerJoined, ID: p.m.ID, Name: p.m.Name})
		res, err := scriptRegister.Run(ctx, s.rdb, nil, s.args(s.node, p.m.ID, p.room, p.m.Name, p.m.Token, joined, flag)...).StringSlice()
		if err != nil || len(res) == 0 {
			s.log.Warn("redis: re-registering a session failed; retrying at the next heartbeat", "peer", p.m.ID, "err", err)
			s.mu.Lock()
			s.down = true
			s.pendingLeaves = append(leaves, s.pendingLeaves...)
			s.mu.Unlock()
			return
		}
		switch res[0] {
		case "moved":
			// Claimed by another node while we were cut off: it is theirs.
			s.mu.Lock()
			if s.local[p.m.ID] == p {
				delete(s.local, p.m.ID)
			}
			s.mu.Unlock()
			if h, ok := p.inbox.(handoverInbox); ok {
				h.HandOver()
			}
		case "ok":
			for _, f := range toFrames(res[1:]) {
				_ = p.inbox.Deliver(f) // the peer may be leaving
			}
		}
	}
	var later []pendingLeave
	for i, l := range leaves {
		n, err := scriptLeave.Run(ctx, s.rdb, nil, s.args(s.node, l.id, l.announce, "1", l.room)...).Int()
		if err != nil {
			s.mu.Lock()
			s.down = true
			s.pendingLeaves = append(append(later, leaves[i:]...), s.pendingLeaves...)
			s.mu.Unlock()
			return
		}
		if n == -2 { // Redis restarted empty: wait until every node re-registered
			later = append(later, l)
		}
	}
	if len(later) > 0 {
		s.mu.Lock()
		s.pendingLeaves = append(later, s.pendingLeaves...)
		s.mu.Unlock()
	}
	if reregister {
		s.log.Info("redis back: sessions re-registered", "sessions", len(peers), "leaves", len(leaves))
	}
}

// refresh renews the backstop TTL of this node's session and room keys.
func (s *RedisStore) refresh(ctx context.Context) {
	s.mu.RLock()
	args := s.args()
	for id, p := range s.local {
		args = append(args, id, p.room)
	}
	s.mu.RUnlock()
	if len(args) > 4 {
		scriptRefresh.Run(ctx, s.rdb, nil, args...) // on failure the next round retries
	}
}
