package natclass

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Classify turns observations into a Result. It is pure: the same
// observations always give the same result, and it never guesses: what the
// evidence cannot decide is "unknown" with a reason.
func Classify(obs Observations) Result {
	c := classifier{obs: obs}
	return c.run()
}

type classifier struct {
	obs Observations
	r   Result
	// bad marks servers whose answers contradict themselves.
	bad map[int]bool
	// alt is each server's usable OTHER-ADDRESS (from its mapping test I).
	alt map[int]netip.AddrPort
}

func (c *classifier) reason(format string, args ...any) {
	c.r.Reasons = append(c.r.Reasons, fmt.Sprintf(format, args...))
}

func (c *classifier) problem(server int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if server >= 0 && server < len(c.obs.Servers) {
		msg = c.obs.Servers[server].Name + ": " + msg
		c.bad[server] = true
	}
	if !slices.Contains(c.r.Problems, msg) {
		c.r.Problems = append(c.r.Problems, msg)
	}
}

func (c *classifier) run() Result {
	c.bad = map[int]bool{}
	c.alt = map[int]netip.AddrPort{}
	c.r = Result{
		Family:           c.obs.Family,
		NAT:              Unknown,
		Mapping:          BehaviorUnknown,
		Filtering:        BehaviorUnknown,
		Hairpinning:      Unknown,
		PortPreservation: Unknown,
		Classic:          ClassicUnknown,
		Reasons:          []string{},
		Observations:     c.obs,
	}
	if c.udpBlocked() {
		return c.finish()
	}
	c.checkServers()
	c.nat()
	c.mapping()
	c.filtering()
	c.hairpin()
	c.portPreservation()
	c.lifetime()
	return c.finish()
}

// udpBlocked decides whether anything came back at all.
func (c *classifier) udpBlocked() bool {
	sent, answered := 0, 0
	for _, e := range c.obs.Exchanges {
		if e.Server < 0 {
			continue
		}
		if e.Transmissions > 0 && e.Error == "" || e.Answered {
			sent++
		}
		if e.Answered {
			answered++
		}
	}
	switch {
	case sent == 0:
		c.reason("no request could be sent to any server, so nothing was observed")
		return true
	case answered == 0 && len(c.refused()) > 0:
		c.r.ServerPortClosed = true
		c.reason("server port closed: %s answered a request from a connected socket with ICMP port unreachable, so UDP reaches the server's host but nothing listens on that port; whether UDP is filtered elsewhere is unknown",
			strings.Join(c.refused(), ", "))
		return true
	case answered == 0:
		c.r.UDPBlocked = true
		c.reason("none of %d requests to %d server(s) was answered despite retransmissions: UDP to these servers is blocked (or every server is down)",
			sent, len(c.obs.Servers))
		return true
	}
	for _, name := range c.refused() {
		c.problem(-1, "%s: server port closed (ICMP port unreachable); the other servers answered", name)
	}
	return false
}

// refused lists the servers whose port answered with ICMP port unreachable.
func (c *classifier) refused() []string {
	var out []string
	for _, e := range c.obs.Exchanges {
		if e.Test == TestReach && e.Refused && e.Server >= 0 && e.Server < len(c.obs.Servers) {
			if name := c.obs.Servers[e.Server].Name; !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	return out
}

// flip returns the other one of a and b.
func flipAddr(x, a, b netip.Addr) (netip.Addr, bool) {
	switch x {
	case a:
		return b, true
	case b:
		return a, true
	}
	return netip.Addr{}, false
}

func flipPort(x, a, b uint16) (uint16, bool) {
	switch x {
	case a:
		return b, true
	case b:
		return a, true
	}
	return 0, false
}

// checkServers validates every answer against the server's own claims:
// RESPONSE-ORIGIN must be the actual source, OTHER-ADDRESS must differ from
// the address asked in IP and port and be consistent across the server's
// four addresses, and CHANGE-REQUEST answers must come from the socket asked
// for.
func (c *classifier) checkServers() {
	// Usable OTHER-ADDRESS per server, from the answer to its own address.
	for _, e := range c.obs.Exchanges {
		if e.Test != TestMapping || !e.ok() || e.Server < 0 || e.Server >= len(c.obs.Servers) {
			continue
		}
		p := c.obs.Servers[e.Server].Addr
		if e.To != p || !e.OtherAddress.IsValid() {
			continue
		}
		if _, seen := c.alt[e.Server]; seen {
			continue
		}
		oa := e.OtherAddress
		if oa.Addr() == p.Addr() || oa.Port() == p.Port() || !oa.Addr().IsValid() || oa.Port() == 0 || oa.Addr().Is4() != p.Addr().Is4() {
			c.problem(e.Server, "OTHER-ADDRESS %v must differ from the address asked (%v) in both IP and port; the server cannot support the RFC 5780 tests as configured", oa, p)
			continue
		}
		c.alt[e.Server] = oa
	}
	for _, e := range c.obs.Exchanges {
		if !e.Answered || e.Server < 0 || e.Server >= len(c.obs.Servers) || !e.From.IsValid() {
			continue
		}
		if e.ResponseOrigin.IsValid() && e.ResponseOrigin != e.From {
			c.problem(e.Server, "the answer to %v came from %v but its RESPONSE-ORIGIN says %v (a wildcard socket, or a server behind NAT without its external address configured)",
				e.To, e.From, e.ResponseOrigin)
		}
		p := c.obs.Servers[e.Server].Addr
		a, has := c.alt[e.Server]
		if e.ErrorCode != 0 || e.Test == TestHairpin {
			continue
		}
		if !has {
			// A plain server: only a note when it answers from elsewhere.
			if e.Change == ChangeNone && e.ResponsePort == 0 && e.From != e.To && e.Test == TestMapping {
				c.reason("note: %s answered the request sent to %v from %v", c.obs.Servers[e.Server].Name, e.To, e.From)
			}
			continue
		}
		ip, okIP := flipAddr(e.To.Addr(), p.Addr(), a.Addr())
		port, okPort := flipPort(e.To.Port(), p.Port(), a.Port())
		if !okIP || !okPort {
			continue
		}
		if e.OtherAddress.IsValid() && e.OtherAddress != netip.AddrPortFrom(ip, port) && e.To != p {
			// coturn 4.6.1 names OTHER-ADDRESS relative to its primary in
			// answers on its other addresses. The tests never use those
			// values, so it is a note, not a verdict; asked on such an
			// address as its primary, the sanity check above catches it.
			c.reason("note: the answer to %v names OTHER-ADDRESS %v, relative to %v it should be %v (coturn 4.6.1 does this; harmless here)",
				e.To, e.OtherAddress, e.To, netip.AddrPortFrom(ip, port))
		}
		want := e.To
		switch e.Change {
		case ChangeIPPort:
			want = netip.AddrPortFrom(ip, port)
		case ChangePort:
			want = netip.AddrPortFrom(e.To.Addr(), port)
		case ChangeIP:
			want = netip.AddrPortFrom(ip, e.To.Port())
		}
		if e.From != want {
			if e.Change != ChangeNone && e.From == e.To {
				c.problem(e.Server, "it advertises OTHER-ADDRESS %v but ignored CHANGE-REQUEST (%s) and answered from %v", a, e.Change, e.From)
			} else {
				c.problem(e.Server, "the answer to %v (CHANGE-REQUEST %q) came from %v, expected %v", e.To, string(e.Change), e.From, want)
			}
		}
	}
}

// isLocal reports whether mapped is the host's own address for local.
func (c *classifier) isLocal(mapped, local netip.AddrPort) bool {
	if mapped.Port() != local.Port() {
		return false
	}
	if mapped.Addr() == local.Addr().Unmap() {
		return true
	}
	return slices.Contains(c.obs.LocalAddrs, mapped.Addr())
}

func (c *classifier) mappingExchanges() []Exchange {
	var out []Exchange
	for _, e := range c.obs.Exchanges {
		if e.Test != TestMapping || !e.ok() || !e.Mapped.IsValid() || e.Change != ChangeNone {
			continue
		}
		if c.bad[e.Server] && e.Server >= 0 && e.Server < len(c.obs.Servers) && e.To != c.obs.Servers[e.Server].Addr {
			// Tests II/III aimed at a misconfigured server's OTHER-ADDRESS.
			continue
		}
		out = append(out, e)
	}
	return out
}

func (c *classifier) nat() {
	ex := c.mappingExchanges()
	if len(ex) == 0 {
		// Fall back to any answered exchange with a mapped address.
		for _, e := range c.obs.Exchanges {
			if e.ok() && e.Mapped.IsValid() && e.Server >= 0 {
				ex = append(ex, e)
				break
			}
		}
	}
	if len(ex) == 0 {
		c.reason("no answer carried a mapped address, so whether there is a NAT is unknown")
		return
	}
	c.r.PublicAddr = ex[0].Mapped
	local, foreign := 0, 0
	for _, e := range ex {
		if c.isLocal(e.Mapped, e.Local) {
			local++
		} else {
			foreign++
		}
	}
	first := ex[0]
	switch {
	case foreign == 0:
		c.r.NAT = No
		c.reason("no NAT: the mapped address %v is this host's own address (local port %d)", first.Mapped, first.Local.Port())
	case local == 0:
		c.r.NAT = Yes
		if slices.Contains(c.obs.LocalAddrs, first.Mapped.Addr()) || first.Mapped.Addr() == first.Local.Addr() {
			c.reason("NAT: the mapped address %v has a local IP but another port than the local one (%d): something rewrites ports", first.Mapped, first.Local.Port())
		} else {
			c.reason("NAT: the server saw %v, which is not an address of this host (sent from local port %d)", first.Mapped, first.Local.Port())
		}
	default:
		c.r.NAT = Yes
		c.problem(-1, "some mapped addresses are local and some are not: a NAT for some destinations only")
		c.reason("NAT for some destinations: %d of %d mapped addresses are not local", foreign, len(ex))
	}
}

func (c *classifier) mapping() {
	ex := c.mappingExchanges()
	// Use the socket with the most mapping exchanges (the probe uses one).
	count := map[int]int{}
	best := 0
	for _, e := range ex {
		count[e.Socket]++
		if count[e.Socket] > count[best] {
			best = e.Socket
		}
	}
	var on []Exchange
	for _, e := range ex {
		if e.Socket == best && !slices.ContainsFunc(on, func(o Exchange) bool { return o.To == e.To }) {
			on = append(on, e)
		}
	}
	var eiAcrossIP, depIP, portIndep, depPort []string
	for i := range on {
		for j := i + 1; j < len(on); j++ {
			a, b := on[i], on[j]
			same := a.Mapped == b.Mapped
			desc := fmt.Sprintf("%v->%v and %v->%v", a.To, a.Mapped, b.To, b.Mapped)
			switch {
			case a.To.Addr() != b.To.Addr() && same:
				eiAcrossIP = append(eiAcrossIP, desc)
			case a.To.Addr() != b.To.Addr():
				depIP = append(depIP, desc)
			case same:
				portIndep = append(portIndep, desc)
			default:
				depPort = append(depPort, desc)
			}
		}
	}
	switch {
	case len(eiAcrossIP) > 0 && (len(depIP) > 0 || len(depPort) > 0):
		c.problem(-1, "contradictory mapping evidence: the same mapping for different destination IPs (%s) but different mappings elsewhere (%s); the NAT may have dropped a mapping mid-test or pools addresses",
			eiAcrossIP[0], first(depIP, depPort))
		c.reason("mapping unknown: contradictory evidence (see problems)")
	case len(depPort) > 0 && len(portIndep) > 0:
		c.problem(-1, "contradictory mapping evidence: changing only the server port changed the mapping once (%s) but not another time (%s)", depPort[0], portIndep[0])
		c.reason("mapping unknown: contradictory evidence (see problems)")
	case len(depPort) > 0:
		c.r.Mapping = AddressAndPortDependent
		c.reason("mapping address-and-port-dependent: a different public port for another port on the same server IP (%s)", depPort[0])
	case len(depIP) > 0 && len(portIndep) > 0:
		c.r.Mapping = AddressDependent
		c.reason("mapping address-dependent: a new public port for another server IP (%s) but the same one for another port on the same IP (%s)", depIP[0], portIndep[0])
	case len(depIP) > 0:
		c.r.Mapping = EndpointDependent
		c.reason("mapping endpoint-dependent: a new public port for another server (%s); address- or address-and-port-dependent is unknown because no server offered two ports on one IP", depIP[0])
	case len(eiAcrossIP) > 0:
		c.r.Mapping = EndpointIndependent
		c.reason("mapping endpoint-independent: the same public address for different server IPs (%s)", eiAcrossIP[0])
	case c.r.NAT == No:
		c.r.Mapping = EndpointIndependent
		c.reason("mapping endpoint-independent: no NAT, addresses are not translated")
	case len(portIndep) > 0:
		c.reason("mapping unknown: the same public address for two ports on one server IP (%s), but no second server IP was reached to tell endpoint-independent from address-dependent", portIndep[0])
	case c.obs.RFC5780Server >= 0 && c.bad[c.obs.RFC5780Server]:
		c.reason("mapping unknown: tests II and III go to the misconfigured server's other address (see problems), so they prove nothing")
	case len(on) <= 1 && c.obs.RFC5780Server < 0:
		c.reason("mapping unknown: needs an RFC 5780 server (one that sends OTHER-ADDRESS) or two plain STUN servers on different IPs")
	default:
		c.reason("mapping unknown: the mapping tests towards the server's other address got no answer")
	}
}

func first(a, b []string) string {
	if len(a) > 0 {
		return a[0]
	}
	if len(b) > 0 {
		return b[0]
	}
	return ""
}

func (c *classifier) filtering() {
	s := c.obs.RFC5780Server
	if s < 0 || s >= len(c.obs.Servers) {
		if len(c.alt) > 0 {
			for k := range c.alt {
				s = k
				break
			}
		} else {
			c.reason("filtering unknown: no server sent a usable OTHER-ADDRESS, and filtering can only be tested by a server that answers from another IP and port (RFC 5780: turnd --rfc5780, or coturn with two IPs)")
			return
		}
	}
	if c.bad[s] {
		c.reason("filtering unknown: the RFC 5780 server is misconfigured (see problems), so its CHANGE-REQUEST answers prove nothing")
		return
	}
	if _, ok := c.alt[s]; !ok {
		c.reason("filtering unknown: %s sent no usable OTHER-ADDRESS", c.obs.Servers[s].Name)
		return
	}
	var ipport, port *Exchange
	for i := range c.obs.Exchanges {
		e := &c.obs.Exchanges[i]
		if e.Test != TestFiltering || e.Server != s {
			continue
		}
		switch e.Change {
		case ChangeIPPort:
			if ipport == nil {
				ipport = e
			}
		case ChangePort:
			if port == nil {
				port = e
			}
		}
	}
	sent := func(e *Exchange) bool { return e != nil && (e.Answered || e.Transmissions > 0 && e.Error == "") }
	for _, e := range []*Exchange{ipport, port} {
		if e != nil && e.Answered && e.ErrorCode != 0 {
			c.reason("filtering unknown: the server answered CHANGE-REQUEST with error %d %s", e.ErrorCode, e.Error)
			return
		}
	}
	if !sent(ipport) || !sent(port) {
		c.reason("filtering unknown: the filtering tests were not (all) run")
		return
	}
	a, b := ipport.ok(), port.ok()
	// A missing answer from the other IP or port proves a filter only if
	// that address has been seen answering at all (mapping tests II and
	// III), not if the server cannot send from it.
	alt := c.alt[s]
	altIPSeen, altPortSeen := false, b
	for _, e := range c.obs.Exchanges {
		if e.Server != s || !e.ok() || e.Test != TestMapping || e.Change != ChangeNone {
			continue
		}
		if e.To.Addr() == alt.Addr() && e.From.Addr() == alt.Addr() {
			altIPSeen = true
		}
		if e.To.Port() == alt.Port() && e.From.Port() == alt.Port() {
			altPortSeen = true
		}
	}
	if !a && !altIPSeen || !b && !altPortSeen {
		c.reason("filtering unknown: no answer came from the server's other address %v at all (mapping tests II/III unanswered), so missing answers from it prove nothing about the filter", alt)
		return
	}
	switch {
	case a && b:
		c.r.Filtering = EndpointIndependent
		c.reason("filtering endpoint-independent: an answer from another IP and port (%v) got through to a fresh socket", ipport.From)
	case a && !b:
		c.problem(-1, "contradictory filtering evidence: an answer from another IP and port (%v) got through, but one from the same IP and another port did not (after %d tries)", ipport.From, port.Transmissions)
		c.reason("filtering unknown: contradictory evidence (see problems)")
	case !a && b:
		c.r.Filtering = AddressDependent
		c.reason("filtering address-dependent: an answer from another port on the server IP the socket had sent to (%v) got through, one from another IP (tried %d times) did not", port.From, ipport.Transmissions)
	default:
		c.r.Filtering = AddressAndPortDependent
		c.reason("filtering address-and-port-dependent: neither an answer from another IP (%d tries) nor from another port of the same IP (%d tries) got through; only the exact address a socket sent to can answer",
			ipport.Transmissions, port.Transmissions)
	}
}

func (c *classifier) hairpin() {
	var ex []Exchange
	for _, e := range c.obs.Exchanges {
		if e.Test == TestHairpin && (e.Answered || e.Transmissions > 0 && e.Error == "") {
			ex = append(ex, e)
		}
	}
	if len(ex) == 0 {
		c.reason("hairpinning unknown: not tested (needs two sockets with mapped addresses)")
		return
	}
	for _, e := range ex {
		if e.Answered {
			c.r.Hairpinning = Yes
			c.reason("hairpinning: a packet sent to another local socket's public address %v came back in to socket %d (source seen: %v)", e.To, e.ReceivedOn, e.From)
			return
		}
	}
	if c.r.Mapping == EndpointIndependent || c.r.Filtering == EndpointIndependent {
		c.r.Hairpinning = No
		c.reason("no hairpinning: packets between two local sockets via their public addresses (%d tries each) never arrived", ex[0].Transmissions)
		return
	}
	c.reason("hairpinning unknown: no packet sent to this NAT's own public address arrived, but with endpoint-dependent mapping or filtering the filter could have dropped it")
}

func (c *classifier) portPreservation() {
	if c.r.NAT == No {
		c.r.PortPreservation = Yes
		c.reason("port preservation: no NAT, ports are kept")
		return
	}
	seen := map[int]bool{}
	kept, changed := 0, 0
	var example string
	for _, e := range c.obs.Exchanges {
		if !e.ok() || !e.Mapped.IsValid() || e.Server < 0 || seen[e.Socket] || e.ResponsePort != 0 {
			continue
		}
		seen[e.Socket] = true
		if e.Mapped.Port() == e.Local.Port() {
			kept++
		} else {
			changed++
			if example == "" {
				example = fmt.Sprintf("local port %d became %d", e.Local.Port(), e.Mapped.Port())
			}
		}
	}
	switch {
	case kept+changed == 0:
		c.reason("port preservation unknown: no mapped address seen")
	case changed == 0:
		c.r.PortPreservation = Yes
		c.reason("port preservation: all %d sockets kept their local port as the public port", kept)
	default:
		c.r.PortPreservation = No
		c.reason("no port preservation: %d of %d sockets got another public port (%s)", changed, kept+changed, example)
	}
}

func (c *classifier) lifetime() {
	if !c.obs.Lifetime {
		return
	}
	var control *Exchange
	alive, expired := -1.0, -1.0
	for i := range c.obs.Exchanges {
		e := &c.obs.Exchanges[i]
		if e.Test != TestLifetime {
			continue
		}
		if e.Answered && (e.ErrorCode != 0 || e.ReceivedOn == e.Socket) {
			c.reason("mapping lifetime unknown: the server does not support RESPONSE-PORT (it answered the sending socket%s)", errSuffix(*e))
			return
		}
		if e.IdleSeconds == 0 {
			control = e
			continue
		}
		if e.Transmissions == 0 && !e.Answered {
			continue
		}
		if e.Answered {
			alive = max(alive, e.IdleSeconds)
		} else if expired < 0 || e.IdleSeconds < expired {
			expired = e.IdleSeconds
		}
	}
	if control == nil || !control.Answered {
		c.reason("mapping lifetime unknown: the server did not deliver an answer to a fresh mapping's port (RESPONSE-PORT unsupported or the answers were lost)")
		return
	}
	if expired >= 0 && alive > expired {
		c.problem(-1, "contradictory mapping lifetime: alive after %gs idle but gone after %gs", alive, expired)
		c.reason("mapping lifetime unknown: contradictory evidence")
		return
	}
	lt := &Lifetime{AliveS: max(alive, 0)}
	if expired > 0 {
		lt.ExpiredS = expired
		c.reason("mapping lifetime: between %gs and %gs idle (alive after %gs, gone after %gs)", lt.AliveS, expired, lt.AliveS, expired)
	} else {
		c.reason("mapping lifetime: at least %gs idle (the longest wait tried)", lt.AliveS)
	}
	c.r.MappingLifetime = lt
}

func errSuffix(e Exchange) string {
	if e.ErrorCode != 0 {
		return fmt.Sprintf(", or with error %d", e.ErrorCode)
	}
	return ""
}

func (c *classifier) finish() Result {
	r := &c.r
	misconfigured := c.obs.RFC5780Server >= 0 && c.bad[c.obs.RFC5780Server]
	for s := range c.alt {
		if c.bad[s] {
			misconfigured = true
		}
	}
	for s := range c.bad {
		if _, hasAlt := c.alt[s]; !hasAlt && c.obs.RFC5780Server < 0 {
			// A server whose OTHER-ADDRESS failed the sanity check.
			misconfigured = true
		}
	}
	switch {
	case r.UDPBlocked:
		r.Verdict = VerdictUDPBlocked
		r.Classic = ClassicBlocked
	case r.ServerPortClosed:
		r.Verdict = VerdictServerPortClosed
		r.Classic = ClassicUnknown
	case misconfigured:
		r.Verdict = VerdictMisconfigured
		r.Classic = ClassicUnknown
	default:
		r.Classic = classicName(r.NAT, r.Mapping, r.Filtering)
		known := r.Mapping == EndpointIndependent || r.Mapping == AddressDependent || r.Mapping == AddressAndPortDependent
		if known && r.Filtering != BehaviorUnknown && r.NAT != Unknown {
			r.Verdict = VerdictComplete
		} else {
			r.Verdict = VerdictPartial
		}
	}
	r.WebRTC = webrtcMeaning(*r)
	return *r
}

func classicName(nat Answer, m, f Behavior) string {
	switch nat {
	case No:
		switch f {
		case EndpointIndependent:
			return ClassicOpenInternet
		case AddressDependent, AddressAndPortDependent:
			return ClassicSymmetricUDPFirewall
		}
	case Yes:
		switch m {
		case AddressDependent, AddressAndPortDependent, EndpointDependent:
			return ClassicSymmetric
		case EndpointIndependent:
			switch f {
			case EndpointIndependent:
				return ClassicFullCone
			case AddressDependent:
				return ClassicRestrictedCone
			case AddressAndPortDependent:
				return ClassicPortRestrictedCone
			}
		}
	}
	return ClassicUnknown
}

// webrtcMeaning says what r means for peer connections.
func webrtcMeaning(r Result) string {
	switch r.Verdict {
	case VerdictUDPBlocked:
		return "UDP is blocked: WebRTC can only connect through a TURN server over TCP or TLS (turn:...?transport=tcp or turns: on port 443)."
	case VerdictServerPortClosed:
		return "Unknown: the STUN server's port is closed (ICMP port unreachable), so nothing was measured; check the server address and port, or ask another server."
	case VerdictMisconfigured:
		return "Unknown: the STUN server gave inconsistent answers, so nothing reliable can be said; fix the server or ask another one."
	}
	// Everything else comes from the same model as Predict and natprobe
	// predict (AdviceText), so the three cannot disagree.
	head := "Partly unknown:"
	switch {
	case r.NAT == No && r.Filtering == EndpointIndependent:
		head = "Open:"
	case r.NAT == No && r.Filtering != BehaviorUnknown:
		head = "No NAT, stateful firewall:"
	case r.Mapping == EndpointIndependent && r.Filtering != BehaviorUnknown:
		head = "Cone NAT:"
	case r.Mapping == AddressDependent || r.Mapping == AddressAndPortDependent || r.Mapping == EndpointDependent:
		head = "Symmetric NAT:"
	}
	return head + " " + AdviceText(r)
}
