package relay

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // RFC 8489 MESSAGE-INTEGRITY is HMAC-SHA1
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/big"
	"strings"
	"time"

	"github.com/pion/stun/v4"
)

// This file holds what the coturn drop-in options of Config change in the
// front door: STUN-only and TURN-only modes, refused relay transports and
// a shorter nonce lifetime.

// validateDropIn checks the coturn drop-in options of Config.
func (cfg Config) validateDropIn() []error {
	var errs []error
	if err := cfg.MetricNames.validate(); err != nil {
		errs = append(errs, err)
	}
	if cfg.STUNOnly && cfg.NoSTUN {
		errs = append(errs, errors.New("stun-only and no-stun together leave nothing to serve"))
	}
	if cfg.NoSTUN && cfg.RFC5780 != nil {
		errs = append(errs, errors.New("no-stun turns off Binding answers, which RFC 5780 needs"))
	}
	if cfg.NoUDPRelay && cfg.NoTCPRelay {
		errs = append(errs, errors.New("no-udp-relay and no-tcp-relay together refuse every allocation"))
	}
	if d := cfg.StaleNonce; d != 0 && (d < time.Minute || d > time.Hour || d%time.Minute != 0) {
		errs = append(errs, fmt.Errorf("stale-nonce %v: want whole minutes from 1m to 1h (pion's nonces record their minute and live at most an hour)", d))
	}
	if d := cfg.MaxAllocationLifetime; d < 0 || d > time.Hour || d%time.Second != 0 {
		errs = append(errs, fmt.Errorf("max-allocate-lifetime %v: want whole seconds up to 1h (pion's maximum)", d))
	}
	if cfg.BPSCapacity < 0 {
		errs = append(errs, fmt.Errorf("bps-capacity %d is negative", cfg.BPSCapacity))
	}
	if v := cfg.TLSMinVersion; v != tls.VersionTLS12 && v != tls.VersionTLS13 {
		errs = append(errs, fmt.Errorf("TLS minimum version %#x: want TLS 1.2 or 1.3", v))
	}
	secure := map[uint16]bool{}
	for _, cs := range tls.CipherSuites() {
		secure[cs.ID] = true
	}
	for _, id := range cfg.TLSCipherSuites {
		if !secure[id] {
			errs = append(errs, fmt.Errorf("TLS cipher suite %s is not one Go offers as secure", tls.CipherSuiteName(id)))
		}
	}
	return errs
}

// modeAllows applies STUNOnly and NoSTUN to a decoded message: ignored
// messages get no answer, as in coturn.
func (s *Server) modeAllows(m *stun.Message) bool {
	binding := m.Type.Method == stun.MethodBinding
	switch {
	case s.cfg.STUNOnly:
		return binding
	case s.cfg.NoSTUN:
		return !binding
	}
	return true
}

// relayTransportAllowed applies NoUDPRelay and NoTCPRelay to an Allocate.
// A missing or malformed REQUESTED-TRANSPORT is left to pion (400).
func (s *Server) relayTransportAllowed(m *stun.Message) bool {
	raw, err := m.Get(stun.AttrRequestedTransport)
	if err != nil || len(raw) < 1 {
		return true
	}
	switch raw[0] {
	case protoUDP:
		return !s.cfg.NoUDPRelay
	case protoTCP:
		return !s.cfg.NoTCPRelay
	}
	return true
}

// nonceStale reports whether nonce, made by pion's nonce manager, is older
// than Config.StaleNonce. pion's nonce is base36 of a 4-byte creation
// minute followed by an HMAC; pion checks the HMAC, this only the age.
// Anything it cannot read is left to pion.
func (s *Server) nonceStale(nonce stun.Nonce, now time.Time) bool {
	if s.cfg.StaleNonce == 0 {
		return false
	}
	minute, ok := nonceMinute(string(nonce))
	if !ok {
		return false
	}
	age := time.Duration(now.Unix()/60-minute) * time.Minute
	return age >= s.cfg.StaleNonce
}

// pionNonceLen is the byte length of pion's short nonce: a 4-byte minute
// and a 12-byte HMAC.
const pionNonceLen = 16

func nonceMinute(nonce string) (int64, bool) {
	if nonce == "" || len(nonce) > 32 {
		return 0, false
	}
	n := new(big.Int)
	if _, ok := n.SetString(strings.ToLower(nonce), 36); !ok {
		return 0, false
	}
	b := n.Bytes()
	if len(b) > pionNonceLen {
		return 0, false
	}
	var full [pionNonceLen]byte
	copy(full[pionNonceLen-len(b):], b)
	return int64(binary.BigEndian.Uint32(full[:4])), true
}

// spoilNonce overwrites the first byte of the NONCE attribute in the
// request b with a character outside base36, so pion's validation fails.
func spoilNonce(b []byte) {
	for off := 20; off+4 <= len(b); {
		t := stun.AttrType(binary.BigEndian.Uint16(b[off:]))
		l := int(binary.BigEndian.Uint16(b[off+2:]))
		if t == stun.AttrNonce && l > 0 && off+4 < len(b) {
			b[off+4] = '!'
			return
		}
		off += 4 + (l+3)&^3
	}
}

// capLifetime lowers the LIFETIME of the authenticated request b to max
// when it asks for more, then signs the request again with key (its
// MESSAGE-INTEGRITY, and FINGERPRINT when present), so pion grants at most
// max. pion honours any requested lifetime under an hour, and gives the
// default (capped to max by withDefaults) to anything longer. A request
// signed with MESSAGE-INTEGRITY-SHA256 only is left alone.
func capLifetime(b []byte, max time.Duration, key []byte) bool {
	if len(b) < 20 {
		return false
	}
	// Only the attributes the header's length covers belong to the message
	// (pion ignores bytes after it, and so must the capper).
	end := 20 + int(binary.BigEndian.Uint16(b[2:4]))
	if end > len(b) {
		return false
	}
	lifeOff, miOff, fpOff := -1, -1, -1
	for off := 20; off+4 <= end; {
		t := stun.AttrType(binary.BigEndian.Uint16(b[off:]))
		l := int(binary.BigEndian.Uint16(b[off+2:]))
		if off+4+l > end {
			return false
		}
		// pion reads the first attribute of each type, so only the first
		// counts here. A first LIFETIME of the wrong size gets pion's
		// default lifetime (capped by withDefaults), and a first
		// MESSAGE-INTEGRITY of the wrong size fails authentication: both
		// are left alone.
		switch {
		case t == stun.AttrLifetime && lifeOff < 0:
			if l != 4 {
				return false
			}
			lifeOff = off + 4
		case t == stun.AttrMessageIntegrity && miOff < 0:
			if l != 20 {
				return false
			}
			miOff = off
		case t == stun.AttrFingerprint && fpOff == -1:
			fpOff = off
			if l != 4 {
				fpOff = -2 // malformed: nothing to sign again
			}
		}
		off += 4 + (l+3)&^3
	}
	if lifeOff < 0 || miOff < 0 {
		return false
	}
	limit := uint32(max / time.Second)
	if binary.BigEndian.Uint32(b[lifeOff:]) <= limit {
		return false
	}
	binary.BigEndian.PutUint32(b[lifeOff:], limit)
	// A LIFETIME after MESSAGE-INTEGRITY is not covered by it, but pion
	// still reads it: cap it all the same, and sign again only what the
	// HMAC covers.
	if lifeOff < miOff {
		// RFC 8489 section 14.5: the HMAC covers the message up to the
		// attribute, with the header length counting up to its end.
		total := binary.BigEndian.Uint16(b[2:4])
		binary.BigEndian.PutUint16(b[2:4], uint16(miOff+24-20))
		mac := hmac.New(sha1.New, key)
		mac.Write(b[:miOff])
		copy(b[miOff+4:miOff+24], mac.Sum(nil))
		binary.BigEndian.PutUint16(b[2:4], total)
	}
	if fpOff > lifeOff {
		binary.BigEndian.PutUint32(b[fpOff+4:], crc32.ChecksumIEEE(b[:fpOff])^0x5354554e)
	}
	return true
}
