package signaling

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TokenClaims are the claims of a join token. A customer's backend mints
// tokens with MintToken (or any JWT library: HS256, claims "room", "exp"
// and optional "name") without calling the hub.
type TokenClaims struct {
	// Room is the room the token admits to. "*" admits to every room.
	Room string
	// Name is the display name other peers see; it must satisfy the same
	// rules as a join's name (at most 64 printable characters).
	Name string
	// Expires is when the token stops admitting. Required.
	Expires time.Time
}

type jwtClaims struct {
	Room string `json:"room"`
	Name string `json:"name,omitempty"`
	jwt.RegisteredClaims
}

// MintToken returns an HS256 JWT for c signed with secret.
func MintToken(secret []byte, c TokenClaims) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("signaling: MintToken needs a secret")
	}
	if c.Room != "*" && !ValidRoomName(c.Room) {
		return "", fmt.Errorf("signaling: invalid room name %q", c.Room)
	}
	if !validName(c.Name) {
		return "", errors.New("signaling: invalid display name")
	}
	if c.Expires.IsZero() {
		return "", errors.New("signaling: a token needs an expiry")
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwtClaims{
		Room:             c.Room,
		Name:             c.Name,
		RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(c.Expires)},
	})
	return t.SignedString(secret)
}

// errUnauthorized is what every token failure becomes on the wire; the
// detail goes to the debug log only.
var errUnauthorized = errors.New("unauthorized")

// verifyToken checks an HS256 token and returns its claims. room "" accepts
// a token for any room (GET /ice).
func verifyToken(secret []byte, token, room string, now time.Time) (TokenClaims, error) {
	if token == "" {
		return TokenClaims{}, fmt.Errorf("%w: token required", errUnauthorized)
	}
	var c jwtClaims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithLeeway(5*time.Second),
	)
	if err != nil {
		return TokenClaims{}, fmt.Errorf("%w: %v", errUnauthorized, err)
	}
	if c.Room != "*" && !ValidRoomName(c.Room) {
		return TokenClaims{}, fmt.Errorf("%w: token has no valid room", errUnauthorized)
	}
	if room != "" && c.Room != "*" && c.Room != room {
		return TokenClaims{}, fmt.Errorf("%w: token is for another room", errUnauthorized)
	}
	if !validName(c.Name) {
		return TokenClaims{}, fmt.Errorf("%w: token has an invalid name", errUnauthorized)
	}
	return TokenClaims{Room: c.Room, Name: c.Name, Expires: c.ExpiresAt.Time}, nil
}

// originAllowed implements Config.AllowedOrigins for r.
func originAllowed(allowed []string, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(allowed) == 0 {
		u, err := url.Parse(origin)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
	for _, a := range allowed {
		if originMatches(a, origin, r.Host) {
			return true
		}
	}
	return false
}

// bearerToken returns the token of GET /ice: the Authorization header's
// bearer token, else the "token" query parameter.
func bearerToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
	}
	return r.URL.Query().Get("token")
}
