package signaling

import (
	"bytes"
	"context"
	"encoding/json"
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
	cfg  RedisConfig
	rdb  *redis.Client
	log  *slog.Logger
	node string
	m    *redisMetrics
	keys redisKeys

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

type redisKeys struct{ prefix, stream string }

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
		keys:    redisKeys{prefix: cfg.Prefix, stream: cfg.Prefix + "node:" + cfg.NodeID + ":in"},
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
		if res, err := s.rdb.XRange(ctx, s.keys.stream, "-", "+").Result(); err == nil {
			for _, e := range res {
				s.handleEntry(ctx, e)
			}
		}
		s.rdb.Del(ctx, s.keys.stream) // best effort: it expires anyway
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

// readStream takes the node's stream in order: frames for local peers,
// handover requests and handed-over frames.
func (s *RedisStore) readStream(lastID string) {
	defer s.wg.Done()
	backoff := 50 * time.Millisecond
	var lastTrim time.Time
	taken := 0
	for s.ctx.Err() == nil {
		res, err := s.rdb.XRead(s.ctx, &redis.XReadArgs{
			Streams: []string{s.keys.stream, lastID}, Count: 256, Block: time.Second,
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
			pipe.XTrimMinID(s.ctx, s.keys.stream, lastID)
			pipe.XDel(s.ctx, s.keys.stream, lastID)
			pipe.Exec(s.ctx) //nolint:errcheck // the next trim catches up
			lastTrim, taken = time.Now(), 0
		}
	}
	// Close forwards what is left from here on: trim what was taken.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), time.Second)
	defer cancel()
	pipe := s.rdb.Pipeline()
	pipe.XTrimMinID(ctx, s.keys.stream, lastID)
	pipe.XDel(ctx, s.keys.stream, lastID)
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

// Collectors implements the hub's metrics hook: Redis round trips, errors
// and reachability.
func (s *RedisStore) Collectors() []prometheus.Collector { return s.m.collectors() }
