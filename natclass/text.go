package natclass

import (
	"fmt"
	"io"
	"strings"
)

// FamilyPrediction is a Prediction for one address family.
type FamilyPrediction struct {
	Family string `json:"family"`
	Prediction
}

// ReportPrediction predicts connectivity between the hosts of two reports,
// per family both probed; Outcome is the best of them, since ICE uses
// whichever family works.
type ReportPrediction struct {
	Outcome  Outcome            `json:"outcome"`
	Families []FamilyPrediction `json:"families"`
}

// PredictReports predicts per family present in both reports. With no
// common family the outcome is OutcomeRelay with no families.
func PredictReports(mine, theirs Report) ReportPrediction {
	rp := ReportPrediction{Outcome: OutcomeRelay, Families: []FamilyPrediction{}}
	for _, a := range mine.Results {
		b, ok := theirs.Result(a.Family)
		if !ok {
			continue
		}
		p := Predict(a, b)
		rp.Families = append(rp.Families, FamilyPrediction{Family: a.Family, Prediction: p})
		if rank(p.Outcome) < rank(rp.Outcome) {
			rp.Outcome = p.Outcome
		}
	}
	return rp
}

var familyName = map[string]string{"ipv4": "IPv4", "ipv6": "IPv6"}

// WriteText writes rep as the human summary natprobe prints.
func WriteText(w io.Writer, rep Report) error {
	var b strings.Builder
	for i, r := range rep.Results {
		if i > 0 {
			b.WriteString("\n")
		}
		writeResult(&b, r)
	}
	for _, s := range rep.Skipped {
		fmt.Fprintf(&b, "\n%s: not probed (%s)\n", familyName[s.Family], s.Reason)
	}
	if rep.Prediction != nil {
		b.WriteString("\n")
		writePrediction(&b, *rep.Prediction, "this host", "the peer")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WritePrediction writes p as natprobe predict prints it.
func WritePrediction(w io.Writer, p ReportPrediction) error {
	var b strings.Builder
	writePrediction(&b, p, "a (first file)", "b (second file)")
	_, err := io.WriteString(w, b.String())
	return err
}

func writePrediction(b *strings.Builder, p ReportPrediction, a, bName string) {
	if len(p.Families) == 0 {
		fmt.Fprintf(b, "Prediction: %s (the two results share no address family)\n", p.Outcome)
		return
	}
	head := strings.ToUpper(string(p.Outcome[:1])) + string(p.Outcome[1:])
	if uncertainOutcome(p) {
		head = "Depends on behaviour natprobe could not decide: " + string(p.Outcome) + " at worst"
	}
	fmt.Fprintf(b, "Prediction: %s\n", head)
	fmt.Fprintf(b, "  (side a is %s, side b is %s)\n", a, bName)
	for _, f := range p.Families {
		certain := ""
		if !f.Certain {
			certain = fmt.Sprintf(" at worst, %s at best (depends on what is unknown)", f.BestCase)
		}
		fmt.Fprintf(b, "  %s: %s%s\n    %s\n", familyName[f.Family], f.Outcome, certain, f.Reason)
	}
	switch p.Outcome {
	case OutcomeRelay:
		b.WriteString("  => Deploy a TURN server (turnd) and give both peers its credentials.\n")
	case OutcomePeerReflexive:
		b.WriteString("  => Works without TURN if both ICE agents keep checking long enough to learn peer-reflexive candidates; keep TURN as a fallback.\n")
	default:
		b.WriteString("  => STUN is enough for this pair.\n")
	}
}

// uncertainOutcome reports whether p's outcome rests on an uncertain family
// prediction: the family that gives the outcome is not certain and no
// certain family does as well.
func uncertainOutcome(p ReportPrediction) bool {
	for _, f := range p.Families {
		if f.Certain && rank(f.Outcome) <= rank(p.Outcome) {
			return false
		}
	}
	return len(p.Families) > 0
}

func writeResult(b *strings.Builder, r Result) {
	fam := familyName[r.Family]
	via := ""
	if s := r.Observations.RFC5780Server; s >= 0 && s < len(r.Observations.Servers) {
		via = fmt.Sprintf(" via %s (RFC 5780 server)", r.Observations.Servers[s].Name)
	} else if len(r.Observations.Servers) > 0 {
		names := make([]string, len(r.Observations.Servers))
		for i, s := range r.Observations.Servers {
			names[i] = s.Name
		}
		kind := "plain STUN, no OTHER-ADDRESS"
		if r.Verdict == VerdictUDPBlocked {
			kind = "no answer"
		}
		for _, e := range r.Observations.Exchanges {
			if e.OtherAddress.IsValid() {
				kind = "its OTHER-ADDRESS is unusable"
				break
			}
		}
		via = fmt.Sprintf(" via %s (%s)", strings.Join(names, ", "), kind)
	}
	fmt.Fprintf(b, "%s%s\n", fam, via)
	row := func(k, v string) { fmt.Fprintf(b, "  %-20s %s\n", k+":", v) }
	switch r.NAT {
	case No:
		note := ""
		if r.Family == "ipv6" {
			note = " (as usual for IPv6; a firewall may still filter)"
		}
		row("NAT", "none: the public address is this host's own "+r.PublicAddr.String()+note)
	case Yes:
		row("NAT", "yes, public address "+r.PublicAddr.String())
	default:
		row("NAT", "unknown")
	}
	if r.Verdict != VerdictUDPBlocked {
		row("Mapping", string(r.Mapping))
		row("Filtering", string(r.Filtering))
		row("Hairpinning", string(r.Hairpinning))
		row("Port preservation", string(r.PortPreservation))
		if lt := r.MappingLifetime; lt != nil {
			if lt.ExpiredS > 0 {
				row("Mapping lifetime", fmt.Sprintf("between %gs and %gs idle", lt.AliveS, lt.ExpiredS))
			} else {
				row("Mapping lifetime", fmt.Sprintf("at least %gs idle", lt.AliveS))
			}
		}
	}
	row("Classic (RFC 3489)", r.Classic)
	row("Verdict", string(r.Verdict))
	row("WebRTC", r.WebRTC)
	if len(r.Problems) > 0 {
		b.WriteString("  Problems:\n")
		for _, p := range r.Problems {
			fmt.Fprintf(b, "    ! %s\n", p)
		}
	}
	b.WriteString("  Why:\n")
	for _, p := range r.Reasons {
		fmt.Fprintf(b, "    - %s\n", p)
	}
}
