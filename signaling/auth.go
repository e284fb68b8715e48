package signaling

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
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

// numericExp reports whether the token's "exp" claim is a JSON number, as
// RFC 7519 requires: the JWT library also takes a string.
func numericExp(token string) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return false
	}
	var claims struct {
		Exp json.RawMessage `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || len(claims.Exp) == 0 {
		return false
	}
	c := claims.Exp[0]
	return c == '-' || (c >= '0' && c <= '9')
}

// errUnauthorized is what every token failure becomes on the wire; the
// detail goes to the debug log only.
var errUnauthorized = errors.New("unauthorized")

// verifyToken checks an HS256 token and returns its claims. room "" accepts
// a token for any room (GET /ice). A token must expire (a numeric "exp")
// within maxLife of now.
func verifyToken(secret []byte, token, room string, now time.Time, maxLife time.Duration) (TokenClaims, error) {
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
	if !numericExp(token) {
		return TokenClaims{}, fmt.Errorf("%w: token exp must be a number", errUnauthorized)
	}
	if maxLife > 0 && c.ExpiresAt.Sub(now) > maxLife {
		return TokenClaims{}, fmt.Errorf("%w: token valid for longer than the hub's maximum token lifetime (%v)", errUnauthorized, maxLife)
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

// requestScheme is the scheme the request arrived with at this process.
func requestScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// hostName is the host of a Host header or URL host: no port, no
// brackets, lower case, no trailing dot.
func hostName(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	h = strings.Trim(h, "[]")
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

func listedHost(allowed []string, name string) bool {
	for _, a := range allowed {
		if hostName(a) == name {
			return true
		}
	}
	return false
}

// hostAllowed implements Config.AllowedHosts for r.
func hostAllowed(allowed []string, r *http.Request) bool {
	return len(allowed) == 0 || listedHost(allowed, hostName(r.Host))
}

// originAllowed implements Config.AllowedOrigins for r. Same-origin (no
// list) needs the Origin's scheme and host to equal the request's, and the
// Host to be one a DNS-rebinding page cannot claim: an IP literal,
// "localhost" or a name in AllowedHosts.
func originAllowed(allowed, hosts []string, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(allowed) == 0 {
		return sameOrigin(hosts, origin, r)
	}
	for _, a := range allowed {
		if strings.TrimSuffix(a, "/") == SameOrigin {
			if sameOrigin(hosts, origin, r) {
				return true
			}
		} else if originMatches(a, origin, r.Host) {
			return true
		}
	}
	return false
}

// sameOrigin is the same-origin rule of Config.AllowedOrigins.
func sameOrigin(hosts []string, origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
		return false
	}
	name := hostName(r.Host)
	listed := listedHost(hosts, name)
	_, ipErr := netip.ParseAddr(name)
	if !listed && name != "localhost" && ipErr != nil {
		return false
	}
	// A listed public name may sit behind a TLS-terminating proxy;
	// addresses and localhost are reached directly.
	proxied := listed && ipErr != nil && name != "localhost"
	return strings.EqualFold(u.Scheme, requestScheme(r)) || (proxied && strings.EqualFold(u.Scheme, "https"))
}

// bearerToken returns the token of GET /ice: the Authorization header's
// bearer token (the scheme is case-insensitive, RFC 9110 11.1), else the
// "token" query parameter.
func bearerToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, t, ok := strings.Cut(strings.TrimSpace(h), " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(t)
		}
	}
	return r.URL.Query().Get("token")
}
