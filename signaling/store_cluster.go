package signaling

// ClusterStore is a Store shared by several hub nodes (RedisStore). Beyond
// Store it moves sessions between nodes: a peer whose connection broke may
// resume on any node, and a draining node parks its sessions for another
// node to claim. The hub checks for it with a type assertion; the
// in-memory store does not implement it.
//
// Errors that wrap ErrUnavailable mean the cluster state could not be
// reached; the hub answers them with the error code "unavailable".
type ClusterStore interface {
	Store
	// ResumeToken returns a new resume token for peer id, in a form Claim
	// can locate on any node.
	ResumeToken(id string) string
	// Claim moves the session of token to this node. It calls inbox with
	// the session's room and member once they are known, delivers frames
	// for the peer to the Inbox it returns from then on, and returns the
	// frames held for the peer elsewhere, in order: they go to the peer
	// before anything the Inbox received meanwhile. ErrUnknownPeer: no such
	// session (its grace window is over).
	Claim(token string, inbox func(room string, m Member) Inbox) (held [][]byte, err error)
	// Park hands a session this node holds to the cluster with the frames
	// it held, oldest first; another node may claim it within the resume
	// grace window, after which its peer is reported left.
	Park(id string, held [][]byte) error
}
