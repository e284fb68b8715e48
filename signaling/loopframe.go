package signaling

import "encoding/binary"

// What the read loop may do with the bytes at the head of a connection's
// read buffer (wholeFrame).
const (
	frameNeedMore = iota // too few bytes yet; size says how many would tell
	frameWhole           // a whole frame the loop may hand to gorilla
	frameOther           // anything else: the connection's own reader takes it
)

// wholeFrame looks at the start of b, a client's bytes at a frame boundary,
// and says whether gorilla can read a whole message from b alone: a final
// (unfragmented), masked text or binary frame with no reserved bits, of at
// most limit payload bytes, entirely in b. Its header is read here only to
// find its length; gorilla still parses it and stays the judge of the
// protocol. Everything else (control frames, fragments, reserved bits,
// unmasked or oversized frames) is frameOther: gorilla, reading for the
// connection's own reader goroutine, handles those, answering, waiting for
// more bytes or failing the connection as it does today, which the loop
// must not (it cannot wait, and must not write from its goroutine).
//
// size is the frame's length with its header when st is frameWhole, and on
// frameNeedMore the number of bytes that would settle the question (the
// header's, or the whole frame's once the header is known).
func wholeFrame(b []byte, limit int) (size, st int) {
	const (
		fin      = 0x80
		rsv      = 0x70
		opText   = 0x1
		opBinary = 0x2
		masked   = 0x80
	)
	if len(b) < 2 {
		return 2, frameNeedMore
	}
	if op := b[0] & 0x0f; b[0]&(fin|rsv) != fin || (op != opText && op != opBinary) || b[1]&masked == 0 {
		return 0, frameOther
	}
	n, hdr := int(b[1]&0x7f), 2
	switch n {
	case 126:
		hdr = 4
	case 127:
		hdr = 10
	}
	if len(b) < hdr {
		return hdr + 4, frameNeedMore
	}
	switch n {
	case 126:
		n = int(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		u := binary.BigEndian.Uint64(b[2:10])
		if u > uint64(limit) {
			return 0, frameOther
		}
		n = int(u)
	}
	if n > limit {
		return 0, frameOther
	}
	hdr += 4 // the masking key
	if len(b) < hdr+n {
		return hdr + n, frameNeedMore
	}
	return hdr + n, frameWhole
}
