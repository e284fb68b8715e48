package natclass

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// SchemaVersion names the JSON schema natprobe --json writes. Fields are
// only ever added under the same name; a breaking change gets a new name.
const SchemaVersion = "rtcsuite.natprobe/v1"

// maxReportSize bounds what ParseReport reads.
const maxReportSize = 4 << 20

// Report is natprobe's JSON document: one Result per address family probed.
type Report struct {
	Schema string `json:"schema"`
	// Started is when the probe began (UTC).
	Started time.Time `json:"started"`
	// DurationMS is how long the whole run took.
	DurationMS float64 `json:"duration_ms"`
	// Servers are the --server arguments as given.
	Servers []string `json:"servers"`
	// Results has one entry per family probed ("ipv4" first).
	Results []Result `json:"results"`
	// Skipped lists families not probed and why.
	Skipped []SkippedFamily `json:"skipped,omitempty"`
	// Prediction is set when natprobe ran with --peer.
	Prediction *ReportPrediction `json:"prediction,omitempty"`
}

// SkippedFamily is a family natprobe did not probe.
type SkippedFamily struct {
	Family string `json:"family"`
	Reason string `json:"reason"`
}

// Result returns the result for family, if present.
func (r Report) Result(family string) (Result, bool) {
	for _, res := range r.Results {
		if res.Family == family {
			return res, true
		}
	}
	return Result{}, false
}

// ErrBadReport wraps every ParseReport failure.
var ErrBadReport = errors.New("natclass: not a natprobe --json report")

// ParseReport reads a saved natprobe --json report (at most 4 MiB) and
// checks that every enumerated field holds a known value, so Predict never
// works on a typo.
func ParseReport(r io.Reader) (Report, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxReportSize+1))
	if err != nil {
		return Report{}, fmt.Errorf("%w: %w", ErrBadReport, err)
	}
	if len(data) > maxReportSize {
		return Report{}, fmt.Errorf("%w: larger than %d bytes", ErrBadReport, maxReportSize)
	}
	var rep Report
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&rep); err != nil {
		return Report{}, fmt.Errorf("%w: %w", ErrBadReport, err)
	}
	if dec.More() {
		return Report{}, fmt.Errorf("%w: trailing data after the JSON object", ErrBadReport)
	}
	if err := rep.validate(); err != nil {
		return Report{}, fmt.Errorf("%w: %w", ErrBadReport, err)
	}
	return rep, nil
}

func (r Report) validate() error {
	var errs []error
	if r.Schema != SchemaVersion {
		errs = append(errs, fmt.Errorf("schema %q, want %q", r.Schema, SchemaVersion))
	}
	if len(r.Results) == 0 {
		errs = append(errs, errors.New("no results"))
	}
	seen := map[string]bool{}
	for i, res := range r.Results {
		if err := res.validate(); err != nil {
			errs = append(errs, fmt.Errorf("results[%d]: %w", i, err))
		}
		if seen[res.Family] {
			errs = append(errs, fmt.Errorf("results[%d]: family %s twice", i, res.Family))
		}
		seen[res.Family] = true
	}
	return errors.Join(errs...)
}

func (r Result) validate() error {
	var errs []error
	oneOf := func(field, v string, allowed ...string) {
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		errs = append(errs, fmt.Errorf("%s %q is not one of %q", field, v, allowed))
	}
	oneOf("family", r.Family, "ipv4", "ipv6")
	oneOf("verdict", string(r.Verdict), string(VerdictComplete), string(VerdictPartial), string(VerdictUDPBlocked), string(VerdictMisconfigured), string(VerdictServerPortClosed))
	oneOf("nat", string(r.NAT), string(Yes), string(No), string(Unknown))
	behaviours := []string{string(EndpointIndependent), string(AddressDependent), string(AddressAndPortDependent), string(BehaviorUnknown)}
	oneOf("mapping", string(r.Mapping), append(behaviours, string(EndpointDependent))...)
	oneOf("filtering", string(r.Filtering), behaviours...)
	oneOf("hairpinning", string(r.Hairpinning), string(Yes), string(No), string(Unknown))
	oneOf("port_preservation", string(r.PortPreservation), string(Yes), string(No), string(Unknown))
	oneOf("classic", r.Classic, ClassicOpenInternet, ClassicFullCone, ClassicRestrictedCone, ClassicPortRestrictedCone,
		ClassicSymmetric, ClassicSymmetricUDPFirewall, ClassicBlocked, ClassicUnknown)
	if r.UDPBlocked != (r.Verdict == VerdictUDPBlocked) {
		errs = append(errs, errors.New("udp_blocked disagrees with verdict"))
	}
	if lt := r.MappingLifetime; lt != nil && (lt.AliveS < 0 || lt.ExpiredS < 0) {
		errs = append(errs, errors.New("negative mapping lifetime"))
	}
	return errors.Join(errs...)
}
