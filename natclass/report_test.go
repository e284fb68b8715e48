package natclass

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleReport() Report {
	r := Classify(synth(EndpointIndependent, AddressAndPortDependent, true))
	return Report{Schema: SchemaVersion, Started: time.Date(2026, 11, 21, 15, 0, 0, 0, time.UTC), DurationMS: 1612.5,
		Servers: []string{"stun.example:3478"}, Results: []Result{r}}
}

func TestReportRoundTrip(t *testing.T) {
	t.Parallel()
	rep := sampleReport()
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseReport(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rep) {
		t.Fatalf("round trip changed the report:\n%+v\n%+v", got, rep)
	}
	// The stable field names of the schema (docs/nat.md).
	for _, field := range []string{`"schema":"rtcsuite.natprobe/v1"`, `"family":"ipv4"`, `"verdict":"complete"`, `"nat":"yes"`,
		`"mapping":"endpoint-independent"`, `"filtering":"address-and-port-dependent"`, `"classic":"port-restricted cone"`,
		`"public_addr":"203.0.113.5:40000"`, `"observations":{`, `"exchanges":[`, `"test":"mapping"`, `"transmissions":`,
		`"hairpinning":"unknown"`, `"port_preservation":"yes"`, `"udp_blocked":false`, `"rfc5780_server":0`, `"change":"ip+port"`} {
		if !bytes.Contains(data, []byte(field)) {
			t.Errorf("JSON lacks %s", field)
		}
	}
	// Re-classifying the stored observations gives the stored result.
	again := Classify(got.Results[0].Observations)
	if again.Mapping != rep.Results[0].Mapping || again.Filtering != rep.Results[0].Filtering || again.Classic != rep.Results[0].Classic {
		t.Fatalf("stored observations classify differently: %+v", again)
	}
}

func TestParseReportRejects(t *testing.T) {
	t.Parallel()
	good, _ := json.Marshal(sampleReport())
	for name, data := range map[string]string{
		"empty":          "",
		"not json":       "hello",
		"array":          "[]",
		"wrong schema":   strings.Replace(string(good), SchemaVersion, "other/v9", 1),
		"bad mapping":    strings.Replace(string(good), `"mapping":"endpoint-independent"`, `"mapping":"cone"`, 1),
		"bad verdict":    strings.Replace(string(good), `"verdict":"complete"`, `"verdict":"fine"`, 1),
		"blocked flag":   strings.Replace(string(good), `"udp_blocked":false`, `"udp_blocked":true`, 1),
		"no results":     `{"schema":"` + SchemaVersion + `","results":[]}`,
		"trailing":       string(good) + `{}`,
		"bad address":    strings.Replace(string(good), `"public_addr":"203.0.113.5:40000"`, `"public_addr":"nowhere"`, 1),
		"duplicate fam":  strings.Replace(string(good), `"results":[`, `"results":[`+resultJSON(t)+`,`, 1),
		"bad family":     strings.Replace(string(good), `"family":"ipv4","verdict"`, `"family":"ipx","verdict"`, 1),
		"too large":      `{"schema":"` + strings.Repeat("x", maxReportSize) + `"}`,
		"negative times": strings.Replace(string(good), `"classic"`, `"mapping_lifetime":{"alive_s":-1},"classic"`, 1),
	} {
		if _, err := ParseReport(strings.NewReader(data)); !errors.Is(err, ErrBadReport) {
			t.Errorf("%s: got %v, want ErrBadReport", name, err)
		}
	}
}

func resultJSON(t *testing.T) string {
	data, err := json.Marshal(sampleReport().Results[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestWriteText(t *testing.T) {
	t.Parallel()
	rep := sampleReport()
	v6 := Classify(synth(EndpointIndependent, AddressAndPortDependent, false))
	v6.Family = "ipv6"
	rep.Results = append(rep.Results, v6)
	p := PredictReports(rep, rep)
	rep.Prediction = &p
	var b strings.Builder
	if err := WriteText(&b, rep); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"IPv4 via stun.example:3478 (RFC 5780 server)", "port-restricted cone", "Filtering:", "WebRTC:",
		"as usual for IPv6", "Prediction: Direct", "STUN is enough", "Why:"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

// FuzzParseReport feeds arbitrary bytes to the parser natprobe predict uses
// on files from elsewhere; whatever parses must classify, predict and print
// without panicking and survive a round trip.
func FuzzParseReport(f *testing.F) {
	good, _ := json.Marshal(sampleReport())
	f.Add(good)
	f.Add([]byte(`{"schema":"rtcsuite.natprobe/v1","results":[{"family":"ipv4","verdict":"partial","nat":"unknown","mapping":"unknown","filtering":"unknown","hairpinning":"unknown","port_preservation":"unknown","classic":"unknown","observations":{"rfc5780_server":5,"exchanges":[{"test":"mapping","server":9,"answered":true}]}}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := ParseReport(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, r := range rep.Results {
			_ = Classify(r.Observations)
			_ = Predict(r, r)
		}
		_ = WriteText(&strings.Builder{}, rep)
		out, err := json.Marshal(rep)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if _, err := ParseReport(bytes.NewReader(out)); err != nil {
			t.Fatalf("re-parse: %v", err)
		}
	})
}

// FuzzClassify builds observations from fuzz input and checks Classify's
// invariants: it never panics and always returns known enum values.
func FuzzClassify(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, true)
	f.Add([]byte{255, 0, 255, 0, 17, 3}, false)
	f.Fuzz(func(t *testing.T, data []byte, rfc5780 bool) {
		obs := Observations{Family: "ipv4", RFC5780Server: -1, Servers: []Server{{Name: "p", Addr: tP}, {Name: "q", Addr: tA}}}
		if rfc5780 {
			obs.RFC5780Server = 0
		}
		tests := []Test{TestMapping, TestFiltering, TestHairpin, TestHairpinBinding, TestLifetime, TestLifetimeBinding}
		changes := []Change{ChangeNone, ChangePort, ChangeIPPort, ChangeIP}
		addrs := []struct{ a, b byte }{{1, 0}, {2, 0}, {1, 1}, {2, 1}}
		mk := func(b byte) (ap4 [2]byte) { return [2]byte{addrs[b%4].a, addrs[b%4].b} }
		for i := 0; i+5 < len(data) && len(obs.Exchanges) < 40; i += 6 {
			d := data[i : i+6]
			to, from := mk(d[2]), mk(d[3])
			toAP := ap(tP.Addr(), tP.Port())
			if to[0] == 2 {
				toAP = ap(tA.Addr(), toAP.Port())
			}
			if to[1] == 1 {
				toAP = ap(toAP.Addr(), tA.Port())
			}
			fromAP := ap(tP.Addr(), tP.Port())
			if from[0] == 2 {
				fromAP = ap(tA.Addr(), fromAP.Port())
			}
			if from[1] == 1 {
				fromAP = ap(fromAP.Addr(), tA.Port())
			}
			e := Exchange{Test: tests[int(d[0])%len(tests)], Change: changes[int(d[1])%len(changes)], Socket: int(d[4] % 4),
				Server: int(d[4]%3) - 1, To: toAP, Transmissions: int(d[5] % 3), Answered: d[5]&4 != 0, ReceivedOn: int(d[5] % 5),
				From: fromAP, Mapped: ap(tPub, uint16(d[5])), IdleSeconds: float64(d[1] % 4)}
			if d[5]&8 != 0 {
				e.OtherAddress = ap(tA.Addr(), tA.Port())
			}
			if d[5]&16 != 0 {
				e.ResponseOrigin = fromAP
			}
			if d[5]&32 != 0 {
				e.ErrorCode = 420
			}
			obs.Exchanges = append(obs.Exchanges, e)
		}
		obs.Lifetime = len(data)%2 == 0
		r := Classify(obs)
		if err := r.validate(); err != nil {
			t.Fatalf("invalid result: %v", err)
		}
	})
}
