//go:build linux

package natlab

import (
	"errors"
	"fmt"
	"strings"
)

// Behavior is an RFC 4787 mapping or filtering behaviour. The string values
// are the words RFC 4787 uses, hyphenated.
type Behavior string

// The three RFC 4787 behaviours, for mapping (section 4.1) and filtering
// (section 5).
const (
	EndpointIndependent  Behavior = "endpoint-independent"
	AddressDependent     Behavior = "address-dependent"
	AddressPortDependent Behavior = "address-and-port-dependent"
)

// Short returns the usual abbreviation with the suffix given (EIM, ADF, ...).
func (b Behavior) Short(suffix string) string {
	switch b {
	case EndpointIndependent:
		return "ei" + suffix
	case AddressDependent:
		return "ad" + suffix
	case AddressPortDependent:
		return "apd" + suffix
	}
	return "?" + suffix
}

func (b Behavior) valid() bool {
	return b == EndpointIndependent || b == AddressDependent || b == AddressPortDependent
}

// Case describes the router of one lab.
type Case struct {
	// Mapping is how the router picks the external port of an outbound
	// flow. Ignored when NoNAT is set.
	Mapping Behavior
	// Filtering is which unsolicited inbound packets reach a mapped inside
	// port. With NoNAT, EndpointIndependent means no firewall at all and
	// AddressPortDependent a stateful firewall (RFC 3489's "symmetric UDP
	// firewall"); AddressDependent is not offered there.
	Filtering Behavior
	// Hairpin lets inside hosts reach each other through the external
	// address (RFC 4787 section 6).
	Hairpin bool
	// PortPreserve keeps the inside source port as the external port. Only
	// endpoint-independent mapping offers it: the address- and
	// address-and-port-dependent mappings never preserve the port.
	PortPreserve bool
	// UDPBlocked drops all forwarded UDP.
	UDPBlocked bool
	// NoNAT routes the LAN without translation (the LAN address is then
	// reachable from the public namespace).
	NoNAT bool
	// LossPercent drops this share of forwarded UDP packets, in both
	// directions, at random (nft numgen; it cannot be seeded).
	LossPercent int
}

// Validate reports every problem with c at once.
func (c Case) Validate() error {
	var errs []error
	if !c.Filtering.valid() {
		errs = append(errs, fmt.Errorf("natlab: filtering %q is not an RFC 4787 behaviour", c.Filtering))
	}
	if c.NoNAT {
		if c.Filtering == AddressDependent {
			errs = append(errs, errors.New("natlab: NoNAT offers endpoint-independent or address-and-port-dependent filtering only"))
		}
		if c.Hairpin || c.PortPreserve {
			errs = append(errs, errors.New("natlab: Hairpin and PortPreserve mean nothing without NAT"))
		}
	} else {
		if !c.Mapping.valid() {
			errs = append(errs, fmt.Errorf("natlab: mapping %q is not an RFC 4787 behaviour", c.Mapping))
		}
		if c.PortPreserve && c.Mapping != EndpointIndependent {
			errs = append(errs, errors.New("natlab: PortPreserve needs endpoint-independent mapping"))
		}
	}
	if c.LossPercent < 0 || c.LossPercent > 99 {
		errs = append(errs, fmt.Errorf("natlab: LossPercent %d outside 0..99", c.LossPercent))
	}
	return errors.Join(errs...)
}

// Name is a short, stable, file-name-safe name such as "eim-apdf-pp" or
// "adm-adf-hairpin".
func (c Case) Name() string {
	var parts []string
	if c.NoNAT {
		parts = append(parts, "nonat")
	} else {
		parts = append(parts, c.Mapping.Short("m"))
	}
	parts = append(parts, c.Filtering.Short("f"))
	if c.PortPreserve {
		parts = append(parts, "pp")
	}
	if c.Hairpin {
		parts = append(parts, "hairpin")
	}
	if c.UDPBlocked {
		parts = append(parts, "blocked")
	}
	if c.LossPercent > 0 {
		parts = append(parts, fmt.Sprintf("loss%d", c.LossPercent))
	}
	return strings.Join(parts, "-")
}

func (c Case) String() string { return c.Name() }

// Cases returns the standard lab: the nine mapping-by-filtering combinations
// (endpoint-independent mapping preserving ports, as Linux masquerading
// does), hairpinning with three mappings, endpoint-independent mapping
// without port preservation, UDP blocked, and the two no-NAT cases (open and
// behind a stateful firewall).
func Cases() []Case {
	bs := []Behavior{EndpointIndependent, AddressDependent, AddressPortDependent}
	var cs []Case
	for _, m := range bs {
		for _, f := range bs {
			cs = append(cs, Case{Mapping: m, Filtering: f, PortPreserve: m == EndpointIndependent})
		}
	}
	cs = append(cs,
		Case{Mapping: EndpointIndependent, Filtering: AddressPortDependent, PortPreserve: true, Hairpin: true},
		Case{Mapping: AddressDependent, Filtering: AddressDependent, Hairpin: true},
		Case{Mapping: AddressPortDependent, Filtering: EndpointIndependent, Hairpin: true},
		Case{Mapping: EndpointIndependent, Filtering: AddressDependent},
		Case{Mapping: EndpointIndependent, Filtering: AddressPortDependent, PortPreserve: true, UDPBlocked: true},
		Case{NoNAT: true, Filtering: EndpointIndependent},
		Case{NoNAT: true, Filtering: AddressPortDependent},
	)
	return cs
}
