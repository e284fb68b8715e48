// Package signaling is a WebSocket signaling hub for WebRTC: peers join
// rooms and exchange opaque signals (SDP descriptions, ICE candidates) by
// random peer id, and receive ICE server lists with short-lived TURN
// credentials. The wire protocol is JSON text frames on GET /ws, described
// for implementers in docs/protocol.md.
//
// What the hub does beyond relaying messages:
//
//   - presence: welcome lists the peers already in the room, peer-joined
//     and peer-left follow; the later joiner is the polite peer of
//     perfect negotiation towards every earlier one;
//   - liveness: WebSocket pings every PingInterval (20 s, below common
//     proxy idle timeouts); a connection that breaks without a close frame
//     keeps its peer id for ResumeGrace, messages to it are held, and a
//     resume with the token from welcome continues where it stopped, with
//     no leave/join seen by the room;
//   - authentication: HS256 join tokens (MintToken) with room, expiry and
//     display name, minted by an application backend without calling the
//     hub; an Origin allow-list; GET /ice guarded exactly like a join;
//   - limits: message size, per-connection rate (WebSocket pings
//     included), connection caps in total, per address and before the
//     upgrade (ConnState), a Host allow-list against DNS rebinding, /ice
//     rate limits, and a send queue bounded by bytes and by how long a
//     write may block, so a reader that stops is disconnected (4001)
//     while one that keeps reading survives any legal burst;
//   - lean idle connections: one parked reader goroutine on a small stack
//     (a fresh goroutine after each message), a writer only while there is
//     something to write, pings and blocked-write checks from one sweeper;
//   - operations: Prometheus metrics and health on AdminHandler, drain with
//     close code 1012 on Shutdown.
//
// Room membership and delivery sit behind the Store interface; the default
// keeps them in memory. RedisStore (a ClusterStore) shares rooms, presence,
// resume and routing between any number of hub nodes on one Redis
// (docs/protocol.md §13). Client is a small Go client for the protocol.
package signaling
