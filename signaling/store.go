package signaling

import (
	"errors"
	"sync"
)

// Errors a Store returns; the hub turns them into error codes.
var (
	ErrRoomFull    = errors.New("signaling: room full")
	ErrUnknownPeer = errors.New("signaling: unknown peer")
)

// Member is one peer of a room as the store knows it.
type Member struct {
	ID   string
	Name string // display name, may be empty
	// Token is the peer's resume token, given to Join so a ClusterStore
	// can resume the session on another node. Stores never return it.
	Token string
}

// Inbox receives the frames addressed to one peer. Deliver must not block,
// must be safe for concurrent use and must not call back into the Store; it returns ErrUnknownPeer when the
// peer can take no more (it is on its way out).
type Inbox interface {
	Deliver(frame []byte) error
}

// Store is the seam between the hub and room state: membership and message
// delivery. The in-memory store (NewMemoryStore) serves one hub instance; a
// store backed by a message bus (NATS, Redis) lets peers on several hub
// instances share rooms, because everything the hub needs from other peers
// goes through these four methods as opaque, already-encoded frames.
//
// Presence is atomic with membership: Join delivers announce to every other
// member in the same step that adds m, and Leave delivers announce in the
// same step that removes the member, so no peer can see a member in a
// welcome list and also miss (or doubly get) its presence events.
type Store interface {
	// Join adds m to room unless room already holds capacity members
	// (ErrRoomFull). It returns the members present before, oldest first,
	// delivers announce to each of them, and from then on delivers frames
	// addressed to m.ID to inbox.
	Join(room string, m Member, capacity int, inbox Inbox, announce []byte) (others []Member, err error)
	// Leave removes id from room and delivers announce to the remaining
	// members. It reports whether id was a member.
	Leave(room, id string, announce []byte) bool
	// Send delivers frame to member to of room, or returns ErrUnknownPeer.
	// Frames from one caller to one member arrive in the order sent.
	Send(room, to string, frame []byte) error
	// Rooms is the number of non-empty rooms this store knows (metrics).
	Rooms() int
}

// NewMemoryStore returns the in-memory Store used by default.
func NewMemoryStore() Store { return &memStore{rooms: make(map[string]*memRoom)} }

// memStore guards rooms with a read-write lock: Join and Leave change
// membership exclusively (so presence stays atomic with it), while Send only
// reads membership, so signals between different pairs deliver in parallel
// instead of queueing on one mutex (the only contended lock the hub
// benchmark found). Inbox.Deliver is safe for concurrent use.
type memStore struct {
	mu    sync.RWMutex
	rooms map[string]*memRoom
}

type memRoom struct {
	order   []Member // join order
	inboxes map[string]Inbox
}

func (s *memStore) Join(room string, m Member, capacity int, inbox Inbox, announce []byte) ([]Member, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[room]
	if r == nil {
		r = &memRoom{inboxes: make(map[string]Inbox)}
		s.rooms[room] = r
	}
	if _, dup := r.inboxes[m.ID]; dup {
		return nil, errors.New("signaling: duplicate peer id")
	}
	if len(r.order) >= capacity {
		return nil, ErrRoomFull
	}
	others := append([]Member(nil), r.order...)
	for _, o := range others {
		_ = r.inboxes[o.ID].Deliver(announce) // a peer on its way out misses presence
	}
	r.order = append(r.order, Member{ID: m.ID, Name: m.Name})
	r.inboxes[m.ID] = inbox
	return others, nil
}

func (s *memStore) Leave(room, id string, announce []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[room]
	if r == nil {
		return false
	}
	if _, ok := r.inboxes[id]; !ok {
		return false
	}
	delete(r.inboxes, id)
	for i, m := range r.order {
		if m.ID == id {
			r.order = append(r.order[:i], r.order[i+1:]...)
			break
		}
	}
	if len(r.order) == 0 {
		delete(s.rooms, room)
		return true
	}
	for _, o := range r.order {
		_ = r.inboxes[o.ID].Deliver(announce) // see Join
	}
	return true
}

func (s *memStore) Send(room, to string, frame []byte) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.rooms[room]
	if r == nil {
		return ErrUnknownPeer
	}
	in, ok := r.inboxes[to]
	if !ok {
		return ErrUnknownPeer
	}
	return in.Deliver(frame)
}

func (s *memStore) Rooms() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.rooms)
}
