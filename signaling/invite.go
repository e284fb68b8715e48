package signaling

import (
	"context"
	"time"
)

// Invites let a peer in a token-mode room bring someone else in without
// handing over its own join token. The peer sends {"type":"invite"}; the hub
// answers {"type":"invite","room":R,"token":T,"expires":unix-seconds} where
// T is a join token the hub minted with its own secret: for room R only
// (never "*"), with no name (the invitee picks one, see join), valid for
// Config.InviteTTL. The page puts T in its share link. docs/protocol.md §7.

// TypeInvite is both the client's request for an invite and the hub's
// answer.
const TypeInvite = "invite"

// defaultInviteTTL is Config.InviteTTL's default.
const defaultInviteTTL = time.Hour

// maxInviteTTL bounds Config.InviteTTL: an invite is a bearer credential to
// the room and cannot be revoked before it expires, so a week at most.
const maxInviteTTL = 7 * 24 * time.Hour

// invite answers an invite request on c. In open mode there is nothing to
// mint: the answer carries the room and no token, and a plain link works.
func (h *Hub) invite(c *conn) {
	s := c.sess
	if s == nil {
		c.sendError(CodeBadMessage, "join a room first", "")
		return
	}
	answer := ServerMessage{Type: TypeInvite, Room: s.room}
	if h.cfg.TokenSecret != nil {
		exp := h.cfg.now().Add(h.cfg.InviteTTL).Truncate(time.Second)
		tok, err := MintToken(h.cfg.TokenSecret, TokenClaims{Room: s.room, Expires: exp})
		if err != nil {
			// The room was validated at join and the secret at NewHub.
			c.log().Error("minting an invite", "err", err)
			c.sendError(CodeBadMessage, "cannot mint an invite", "")
			return
		}
		answer.Token, answer.Expires = tok, exp.Unix()
	}
	c.log().Info("invite minted", "peer", s.id, "room", s.room, "ttl", h.cfg.InviteTTL, "token_mode", h.cfg.TokenSecret != nil)
	c.reply(answer)
}

// Invite asks the hub for an invite to the client's room and returns the
// answer (Token is empty on an open hub), or an *Error. Like Join, it
// consumes messages up to the answer.
func (c *Client) Invite(ctx context.Context) (ServerMessage, error) {
	if err := c.Send(ClientMessage{Type: TypeInvite}); err != nil {
		return ServerMessage{}, err
	}
	return c.await(ctx, TypeInvite)
}
