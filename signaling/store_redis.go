package signaling

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// RedisConfig configures a RedisStore. Zero values are working defaults.
type RedisConfig struct {
	// Client is the connection to Redis (required). One Redis server or a
	// Sentinel-managed primary; Redis Cluster is not supported (the
	// scripts touch keys of many rooms).
	Client *redis.Client
	// Prefix starts every key. Default "rtcsuite:".
	Prefix string
	// NodeID names this hub node; it must be unique in the cluster.
	// Default: random.
	NodeID string
	// Heartbeat is how often the node renews its liveness and reaps dead
	// nodes' sessions. Default 1s.
	Heartbeat time.Duration
	// NodeTTL is how long a silent node counts as alive. Its sessions are
	// then parked for ResumeGrace and reported left after it. Default 5s.
	NodeTTL time.Duration
	// ResumeGrace and HeldMessages must match the hub's Config: a parked
	// session waits ResumeGrace for a resume and holds at most HeldMessages
	// frames in Redis. Defaults 30s and 256.
	ResumeGrace  time.Duration
	HeldMessages int
	// HandoverTimeout bounds how long a resume waits for the previous node
	// to send the frames it held. Default 2s.
	HandoverTimeout time.Duration
	// Logger receives the store's logs. Default slog.Default().
	Logger *slog.Logger
}

func (c *RedisConfig) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = "rtcsuite:"
	}
	if c.NodeID == "" {
		c.NodeID = randomString(9)
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = time.Second
	}
	if c.NodeTTL == 0 {
		c.NodeTTL = 5 * time.Second
	}
	if c.ResumeGrace == 0 {
		c.ResumeGrace = 30 * time.Second
	}
	if c.HeldMessages == 0 {
		c.HeldMessages = 256
	}
	if c.HandoverTimeout == 0 {
		c.HandoverTimeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func (c *RedisConfig) validate() error {
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("Client is required"))
	}
	if strings.ContainsAny(c.NodeID, ": ") {
		errs = append(errs, fmt.Errorf("NodeID %q: no colons or spaces", c.NodeID))
	}
	if c.Heartbeat <= 0 || c.NodeTTL < 2*c.Heartbeat {
		errs = append(errs, fmt.Errorf("NodeTTL %v must be at least twice Heartbeat %v", c.NodeTTL, c.Heartbeat))
	}
	if c.HeldMessages < 1 {
		errs = append(errs, fmt.Errorf("HeldMessages %d: must be at least 1", c.HeldMessages))
	}
	return errors.Join(errs...)
}

// ErrUnavailable is returned by a cluster store when the operation needs
// Redis and Redis cannot be reached; the hub answers "unavailable".
var ErrUnavailable = errors.New("signaling: cluster store unavailable")

// RedisStore is a ClusterStore on Redis: rooms, presence, resume and
// signal routing shared by every hub node that uses the same Redis and
// prefix. Frames between peers on this node never touch Redis; frames to
// a peer on another node go through that node's stream, in order per
// sender and receiver. docs/protocol.md ("Cluster") says what clients see.
type RedisStore struct {
	cfg    RedisConfig
	rdb    *redis.Client
	log    *slog.Logger
	node   string
	m      *redisMetrics
	stream string // this node's stream: node:<id>:in

	// routing orders, per target peer, a send through Redis before the
	// peer's arrival on this node (Claim): a frame routed to the old node
	// must reach the handover, not overtake the local frames after it.
	routing [64]sync.RWMutex

	mu     sync.RWMutex
	local  map[string]*localPeer // peers whose session is on this node, by id
	claims map[string]chan [][]byte
	// parking: frames of sessions being parked (Park), until the reader
	// meets the park marker in the stream.
	parking map[string][][]byte
	// leaves made while Redis was unreachable, replayed when it returns.
	pendingLeaves []pendingLeave
	down          bool // the last heartbeat failed
	reaped        bool // another node reaped us while we were cut off
	sawBoot       atomic.Bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
}

type localPeer struct {
	room  string
	m     Member
	inbox Inbox
}

type pendingLeave struct{ id, room, announce string }

// handoverInbox is an Inbox whose peer can move to another node: HandOver
// retires it here and returns the frames it had not delivered, in order.
type handoverInbox interface {
	Inbox
	HandOver() [][]byte
}

// NewRedisStore checks that Redis answers, registers the node and starts
// its heartbeat and stream reader. Close stops them.
func NewRedisStore(ctx context.Context, cfg RedisConfig) (*RedisStore, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("signaling: invalid redis config: %w", err)
	}
	s := &RedisStore{
		cfg:     cfg,
		rdb:     cfg.Client,
		log:     cfg.Logger.With("node", cfg.NodeID),
		node:    cfg.NodeID,
		m:       newRedisMetrics(),
		stream:  cfg.Prefix + "node:" + cfg.NodeID + ":in",
		local:   make(map[string]*localPeer),
		claims:  make(map[string]chan [][]byte),
		parking: make(map[string][][]byte),
	}
	s.rdb.AddHook(s.m)
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("signaling: redis: %w", err)
	}
	if _, err := s.tick(ctx, false); err != nil {
		return nil, fmt.Errorf("signaling: redis: registering node: %w", err)
	}
	// The store outlives ctx (which bounds only this setup); Close ends it.
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.wg.Add(2)
	go s.heartbeat()
	// From the start of the stream, never "$": entries added between two
	// blocking reads would be skipped. What the stream holds is untaken
	// (the reader trims what it took), also for a node restarted under
	// the same id.
	go s.readStream("0-0")
	return s, nil
}

// NodeID returns this node's id.
func (s *RedisStore) NodeID() string { return s.node }

// Close marks the node dead (so the other nodes park what it still holds
// at their next heartbeat), forwards what waits in its stream and stops.
// Call it after Hub.Shutdown. The Redis client stays open.
func (s *RedisStore) Close() error {
	s.closed.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := s.tick(ctx, true); err != nil {
			s.log.Warn("redis: marking node stopped", "err", err)
		}
		s.cancel()
		s.wg.Wait()
		// Frames routed here before the mark: hand them on.
		if res, err := s.rdb.XRange(ctx, s.stream, "-", "+").Result(); err == nil {
			for _, e := range res {
				s.handleEntry(ctx, e)
			}
		}
		s.rdb.Del(ctx, s.stream) // best effort: it expires anyway
	})
	return nil
}

func (s *RedisStore) args(extra ...any) []any {
	a := make([]any, 0, 4+len(extra))
	a = append(a, s.cfg.Prefix, s.cfg.NodeTTL.Milliseconds(), s.cfg.HeldMessages, s.keyTTL().Milliseconds())
	return append(a, extra...)
}

// keyTTL is the backstop lifetime of every key: long enough that a live
// owner always renews it first.
func (s *RedisStore) keyTTL() time.Duration {
	return max(10*time.Minute, 4*(s.cfg.NodeTTL+s.cfg.ResumeGrace))
}

func (s *RedisStore) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 3*time.Second)
}

func unavailable(err error) error { return fmt.Errorf("%w: %v", ErrUnavailable, err) }

// Join implements Store: admission, membership and presence in one script.
func (s *RedisStore) Join(room string, m Member, capacity int, inbox Inbox, announce []byte) ([]Member, error) {
	// Registered first: once the script ran, frames for m may arrive.
	s.mu.Lock()
	if _, dup := s.local[m.ID]; dup {
		s.mu.Unlock()
		return nil, errors.New("signaling: duplicate peer id")
	}
	s.local[m.ID] = &localPeer{room: room, m: m, inbox: inbox}
	s.mu.Unlock()
	ctx, cancel := s.opCtx()
	defer cancel()
	res, err := scriptJoin.Run(ctx, s.rdb, nil, s.args(s.node, room, m.ID, m.Name, m.Token, capacity, announce)...).StringSlice()
	if err == nil && len(res) == 0 {
		err = errors.New("empty answer")
	}
	if err != nil || res[0] != "ok" {
		s.mu.Lock()
		delete(s.local, m.ID)
		s.mu.Unlock()
		switch {
		case err != nil:
			return nil, unavailable(err)
		case res[0] == "unavailable":
			return nil, unavailable(errors.New("redis is recovering from a restart"))
		case res[0] == "full":
			return nil, ErrRoomFull
		default:
			return nil, errors.New("signaling: duplicate peer id")
		}
	}
	others := make([]Member, 0, len(res)/2)
	for i := 1; i+1 < len(res); i += 2 {
		others = append(others, Member{ID: res[i], Name: res[i+1]})
	}
	// Peers on this node get the announce directly, before anything the
	// new peer can send them.
	s.mu.RLock()
	for _, o := range others {
		if p := s.local[o.ID]; p != nil && p.room == room {
			_ = p.inbox.Deliver(announce) // a peer on its way out misses presence
		}
	}
	s.mu.RUnlock()
	return others, nil
}

// Leave implements Store. While Redis is unreachable the peers on this
// node are told at once and the rest when Redis returns.
func (s *RedisStore) Leave(room, id string, announce []byte) bool {
	s.mu.Lock()
	p := s.local[id]
	delete(s.local, id)
	s.mu.Unlock()
	ctx, cancel := s.opCtx()
	defer cancel()
	n, err := scriptLeave.Run(ctx, s.rdb, nil, s.args(s.node, id, announce, "0", room)...).Int()
	if err != nil {
		s.log.Warn("redis: leave deferred until redis returns", "peer", id, "err", err)
		s.mu.Lock()
		s.pendingLeaves = append(s.pendingLeaves, pendingLeave{id: id, room: room, announce: string(announce)})
		for oid, o := range s.local {
			if o.room == room && oid != id {
				_ = o.inbox.Deliver(announce) // see Join
			}
		}
		s.mu.Unlock()
		return p != nil
	}
	return n == 1 || p != nil
}

// Send implements Store: directly to a peer on this node, else through
// Redis to the node holding it.
func (s *RedisStore) Send(room, to string, frame []byte) error {
	if ok, err := s.sendLocal(room, to, frame); ok {
		return err
	}
	r := s.route(to)
	r.RLock()
	defer r.RUnlock()
	if ok, err := s.sendLocal(room, to, frame); ok { // arrived meanwhile
		return err
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	n, err := scriptRoute.Run(ctx, s.rdb, nil, s.args(room, to, frame)...).Int()
	switch {
	case err != nil:
		return unavailable(err)
	case n == -2:
		return unavailable(errors.New("redis is recovering from a restart"))
	case n == 0:
		return ErrUnknownPeer
	}
	return nil
}

func (s *RedisStore) sendLocal(room, to string, frame []byte) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if p := s.local[to]; p != nil && p.room == room {
		return true, p.inbox.Deliver(frame)
	}
	return false, nil
}

// route returns the routing lock of peer id.
func (s *RedisStore) route(id string) *sync.RWMutex {
	h := fnv.New32a()
	h.Write([]byte(id))
	return &s.routing[h.Sum32()%uint32(len(s.routing))]
}

// Rooms implements Store: the rooms with a peer on this node.
func (s *RedisStore) Rooms() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rooms := make(map[string]struct{})
	for _, p := range s.local {
		rooms[p.room] = struct{}{}
	}
	return len(rooms)
}

// ResumeToken implements ClusterStore: the token carries the peer id so
// any node can find the session.
func (s *RedisStore) ResumeToken(id string) string { return id + "." + newResumeToken() }

// Claim implements ClusterStore.
func (s *RedisStore) Claim(token string, inbox func(room string, m Member) Inbox) ([][]byte, error) {
	id, _, ok := strings.Cut(token, ".")
	if !ok || id == "" {
		return nil, ErrUnknownPeer
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	info, err := scriptRoomOf.Run(ctx, s.rdb, nil, s.args(id, token)...).StringSlice()
	if err != nil {
		return nil, unavailable(err)
	}
	if len(info) == 3 {
		return nil, unavailable(errors.New("redis is recovering from a restart"))
	}
	if len(info) != 2 {
		return nil, ErrUnknownPeer
	}
	m := Member{ID: id, Name: info[1], Token: token}
	in := inbox(info[0], m)
	frames := make(chan [][]byte, 1)
	r := s.route(id)
	r.Lock() // sends to id already on their way through Redis finish first
	s.mu.Lock()
	_, busy := s.local[id]
	if !busy {
		s.local[id] = &localPeer{room: info[0], m: m, inbox: in}
		s.claims[id] = frames
	}
	s.mu.Unlock()
	r.Unlock()
	if busy {
		return nil, ErrUnknownPeer // being claimed by another connection here
	}
	defer func() {
		s.mu.Lock()
		delete(s.claims, id)
		s.mu.Unlock()
	}()
	res, err := s.runClaim(ctx, id, token)
	if err != nil || len(res) == 0 {
		s.mu.Lock()
		delete(s.local, id)
		s.mu.Unlock()
		if err != nil {
			return nil, unavailable(err)
		}
		return nil, ErrUnknownPeer
	}
	held := toFrames(res[1:])
	if res[0] == "1" {
		t := time.NewTimer(s.cfg.HandoverTimeout)
		defer t.Stop()
		select {
		case f := <-frames:
			held = append(f, held...)
		case <-t.C:
			s.m.handoverTimeouts.Inc()
			s.log.Warn("redis: previous node sent no held frames in time; resuming without them", "peer", id)
		}
	}
	return held, nil
}

// runClaim runs the claim script, waiting while the session is being
// parked by another node (its reader is collecting the last frames).
func (s *RedisStore) runClaim(ctx context.Context, id, token string) ([]string, error) {
	deadline := time.Now().Add(s.cfg.HandoverTimeout)
	for {
		res, err := scriptClaim.Run(ctx, s.rdb, nil, s.args(s.node, id, token)...).StringSlice()
		if err != nil || len(res) == 0 || res[0] != "retry" {
			return res, err
		}
		if time.Now().After(deadline) {
			return nil, unavailable(errors.New("the session is still being parked by its node"))
		}
		select {
		case <-ctx.Done():
			return nil, unavailable(ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Park implements ClusterStore (see scriptPark for the two steps).
func (s *RedisStore) Park(id string, held [][]byte) error {
	s.mu.Lock()
	delete(s.local, id)
	s.parking[id] = held
	s.mu.Unlock()
	ctx, cancel := s.opCtx()
	defer cancel()
	n, err := scriptPark.Run(ctx, s.rdb, nil, s.args(s.node, id, s.cfg.ResumeGrace.Milliseconds())...).Int()
	if err != nil || n == 0 {
		s.mu.Lock()
		delete(s.parking, id)
		s.mu.Unlock()
		if err != nil {
			return unavailable(err)
		}
		return ErrUnknownPeer
	}
	return nil
}

// unpark ends a park when the reader met its marker.
func (s *RedisStore) unpark(ctx context.Context, id string) {
	s.mu.Lock()
	frames, ok := s.parking[id]
	delete(s.parking, id)
	s.mu.Unlock()
	if !ok {
		return
	}
	args := s.args(s.node, id)
	for _, f := range frames {
		args = append(args, f)
	}
	if err := scriptUnpark.Run(ctx, s.rdb, nil, args...).Err(); err != nil {
		s.log.Warn("redis: parking a session lost its held frames", "peer", id, "frames", len(frames), "err", err)
	}
}

func toFrames(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, f := range ss {
		out[i] = []byte(f)
	}
	return out
}

// Collectors implements the hub's metrics hook: Redis round trips, errors
// and reachability.
func (s *RedisStore) Collectors() []prometheus.Collector { return s.m.collectors() }
