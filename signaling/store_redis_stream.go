package signaling

// The node's stream (P node:<id>:in): frames routed to peers on this node,
// handover requests from nodes claiming a session held here, handed-over
// frames for sessions claimed here, and park markers. One reader takes it
// in order.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// readStream takes the node's stream in order: frames for local peers,
// handover requests and handed-over frames.
func (s *RedisStore) readStream(lastID string) {
	defer s.wg.Done()
	backoff := 50 * time.Millisecond
	var lastTrim time.Time
	taken := 0
	for s.ctx.Err() == nil {
		res, err := s.rdb.XRead(s.ctx, &redis.XReadArgs{
			Streams: []string{s.stream, lastID}, Count: 256, Block: time.Second,
		}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			select { // the loop ends once the store is closed
			case <-s.ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		for _, st := range res {
			for _, e := range st.Messages {
				s.handleEntry(s.ctx, e)
				lastID = e.ID
				taken++
			}
		}
		// What we took is ours now: trim it so the stream stays short (and
		// Close forwards only what is left). Not after every read: a trim
		// is a round trip, and at low rates reads carry one entry each.
		if taken >= 1024 || time.Since(lastTrim) >= time.Second {
			pipe := s.rdb.Pipeline()
			pipe.XTrimMinID(s.ctx, s.stream, lastID)
			pipe.XDel(s.ctx, s.stream, lastID)
			pipe.Exec(s.ctx) //nolint:errcheck // the next trim catches up
			lastTrim, taken = time.Now(), 0
		}
	}
	// Close forwards what is left from here on: trim what was taken.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), time.Second)
	defer cancel()
	pipe := s.rdb.Pipeline()
	pipe.XTrimMinID(ctx, s.stream, lastID)
	pipe.XDel(ctx, s.stream, lastID)
	pipe.Exec(ctx) //nolint:errcheck // best effort
}

func field(e redis.XMessage, k string) string {
	v, _ := e.Values[k].(string)
	return v
}

func (s *RedisStore) handleEntry(ctx context.Context, e redis.XMessage) {
	to := field(e, "to")
	switch field(e, "k") {
	case "m":
		frame := field(e, "f")
		if s.deliverLocal(to, frame, false) {
			return
		}
		if s.deliverLocal(to, frame, true) {
			return
		}
		// The peer moved or left after this was routed here.
		s.forward(ctx, to, frame)
	case "h":
		s.handOver(ctx, to, field(e, "dst"))
	case "p":
		s.unpark(ctx, to)
	case "f":
		var fs []json.RawMessage
		if err := json.Unmarshal([]byte(field(e, "fs")), &fs); err != nil {
			s.log.Error("redis: bad handover entry", "err", err)
			return
		}
		frames := make([][]byte, len(fs))
		for i, f := range fs {
			frames[i] = f
		}
		s.mu.RLock()
		ch := s.claims[to]
		s.mu.RUnlock()
		if ch == nil {
			s.log.Warn("redis: held frames arrived after the resume gave up waiting; dropped", "peer", to, "frames", len(frames))
			return
		}
		select {
		case ch <- frames:
		default:
		}
	}
}

// deliverLocal hands a frame from the stream to a peer on this node, or
// (exclusive, for the rarer case) to a session being parked. It reports
// whether the frame found its peer here.
func (s *RedisStore) deliverLocal(to, frame string, exclusive bool) bool {
	if !exclusive {
		s.mu.RLock()
		defer s.mu.RUnlock()
	} else {
		s.mu.Lock()
		defer s.mu.Unlock()
		if held, ok := s.parking[to]; ok {
			s.parking[to] = append(held, []byte(frame))
			return true
		}
	}
	if p := s.local[to]; p != nil {
		_ = p.inbox.Deliver([]byte(frame)) // the peer may be leaving
		return true
	}
	return false
}

func (s *RedisStore) forward(ctx context.Context, to, frame string) {
	if _, err := scriptForward.Run(ctx, s.rdb, nil, s.args(s.node, to, frame)...).Result(); err != nil {
		s.log.Warn("redis: frame for a moved peer lost", "peer", to, "err", err)
	}
}

// handOver answers another node's claim: the local session retires and
// its undelivered frames go to dst. The write lock is held until they are
// on their way, so a local sender's next frame (routed through Redis once
// the peer is gone from here) cannot overtake them.
func (s *RedisStore) handOver(ctx context.Context, id, dst string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var frames [][]byte
	if p := s.local[id]; p != nil {
		delete(s.local, id)
		if h, ok := p.inbox.(handoverInbox); ok {
			frames = h.HandOver()
		}
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for i, f := range frames {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(f)
	}
	b.WriteByte(']')
	stream := s.cfg.Prefix + "node:" + dst + ":in"
	pipe := s.rdb.TxPipeline()
	pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"k", "f", "to", id, "fs", b.String()}})
	pipe.PExpire(ctx, stream, s.keyTTL())
	if _, err := pipe.Exec(ctx); err != nil {
		s.log.Warn("redis: handing over held frames failed", "peer", id, "frames", len(frames), "err", err)
	}
}
