// Package turnrest implements the TURN REST API credential format shared by
// coturn, LiveKit and others (draft-uberti-behave-turn-rest-00): the username
// is "<unix-expiry>:<user>" and the password is
// base64(HMAC-SHA1(secret, username)).
//
// It is a leaf package (standard library only): the relay verifies these
// credentials and the signaling hub's command mints them, with one shared
// secret and no call between them.
package turnrest

import (
	"crypto/hmac"
	"crypto/md5"  //nolint:gosec // RFC 8489 long-term key derivation is MD5 by definition.
	"crypto/sha1" //nolint:gosec // the TURN REST format is HMAC-SHA1 by definition.
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Errors returned by Parse and Check; callers decide on them with errors.Is.
var (
	ErrMalformed = errors.New("turnrest: username is not <unix-expiry>:<user>")
	ErrExpired   = errors.New("turnrest: credential expired")
	ErrBadSecret = errors.New("turnrest: password does not match any secret")
)

// Credential is one minted TURN REST credential.
type Credential struct {
	Username string    // "<unix-expiry>:<user>"
	Password string    // base64(HMAC-SHA1(secret, Username))
	Expires  time.Time // the expiry encoded in Username
}

// Mint returns a credential for user that expires at expiry, signed with
// secret. The user part may itself contain colons; only the first colon
// separates it from the expiry.
func Mint(secret []byte, user string, expiry time.Time) Credential {
	username := strconv.FormatInt(expiry.Unix(), 10) + ":" + user
	if user == "" {
		// coturn also accepts a bare timestamp; keep the colon-free form then.
		username = strconv.FormatInt(expiry.Unix(), 10)
	}
	return Credential{
		Username: username,
		Password: Password(secret, username),
		Expires:  time.Unix(expiry.Unix(), 0),
	}
}

// Password returns base64(HMAC-SHA1(secret, username)).
func Password(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username)) // hash writes never fail
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Parse splits a REST username into its expiry and user. A bare timestamp
// (no colon) is accepted, as coturn does, with an empty user.
func Parse(username string) (expiry time.Time, user string, err error) {
	ts, user, _ := strings.Cut(username, ":")
	if ts == "" || len(ts) > 19 {
		return time.Time{}, "", ErrMalformed
	}
	for _, c := range ts {
		if c < '0' || c > '9' {
			return time.Time{}, "", ErrMalformed
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return time.Unix(sec, 0), user, nil
}

// LongTermKey returns the RFC 8489 long-term credential key
// MD5(username ":" realm ":" password) that MESSAGE-INTEGRITY is keyed with.
func LongTermKey(username, realm, password string) []byte {
	h := md5.New() //nolint:gosec // see import comment
	h.Write([]byte(username + ":" + realm + ":" + password))
	return h.Sum(nil)
}

// Keys returns, for each secret in order, the long-term key that a client
// holding the REST credential username would use in realm. The relay tries
// them in turn against a request's MESSAGE-INTEGRITY to learn which secret
// signed it, which is what lets operators rotate secrets without downtime.
func Keys(secrets [][]byte, username, realm string) [][]byte {
	keys := make([][]byte, len(secrets))
	for i, s := range secrets {
		keys[i] = LongTermKey(username, realm, Password(s, username))
	}
	return keys
}

// Check verifies password for username against any of secrets at time now.
// It returns the index of the matching secret. It is for callers that hold a
// plaintext password (HTTP APIs, tests); the relay checks MESSAGE-INTEGRITY
// with Keys instead.
func Check(secrets [][]byte, username, password string, now time.Time) (int, error) {
	expiry, _, err := Parse(username)
	if err != nil {
		return -1, err
	}
	for i, s := range secrets {
		if hmac.Equal([]byte(Password(s, username)), []byte(password)) {
			if now.After(expiry) {
				return i, ErrExpired
			}
			return i, nil
		}
	}
	return -1, ErrBadSecret
}
