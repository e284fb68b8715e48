package main

import (
	"strings"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/turnrest"
	"github.com/rtcsuite/rtcsuite/signaling"
)

// iceServersFunc is the hub's Config.ICEServers: stun: URLs as they are,
// turn:/turns: URLs with a TURN REST credential minted for the peer id
// (username "<unix-expiry>:<peer id>", password
// base64(HMAC-SHA1(secret, username))) that expires after ttl.
func iceServersFunc(urls []string, secret []byte, ttl time.Duration, now func() time.Time) func(string) ([]signaling.ICEServer, time.Time) {
	var stun, turn []string
	for _, u := range urls {
		if strings.HasPrefix(u, "stun") {
			stun = append(stun, u)
		} else {
			turn = append(turn, u)
		}
	}
	return func(peerID string) ([]signaling.ICEServer, time.Time) {
		out := make([]signaling.ICEServer, 0, 2)
		if len(stun) > 0 {
			out = append(out, signaling.ICEServer{URLs: stun})
		}
		if len(turn) == 0 {
			return out, time.Time{}
		}
		c := turnrest.Mint(secret, peerID, now().Add(ttl))
		out = append(out, signaling.ICEServer{URLs: turn, Username: c.Username, Credential: c.Password})
		return out, c.Expires
	}
}
