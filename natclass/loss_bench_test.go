package natclass

import (
	"context"
	"math/rand/v2"
	"testing"
)

// BenchmarkProbeLoss20 measures how often a probe classifies correctly when
// 20% of requests and 20% of answers are lost (in-process fake NAT, not the
// netns lab). It reports the share of correct runs; it asserts nothing.
//
//	go test -run XXX -bench ProbeLoss20 -benchtime 20x ./natclass/
func BenchmarkProbeLoss20(b *testing.B) {
	cases := []struct{ m, f Behavior }{
		{EndpointIndependent, EndpointIndependent},
		{EndpointIndependent, AddressDependent},
		{EndpointIndependent, AddressAndPortDependent},
		{AddressDependent, AddressDependent},
		{AddressAndPortDependent, AddressAndPortDependent},
	}
	for _, c := range cases {
		b.Run(c.m.short()+"/"+c.f.short(), func(b *testing.B) {
			srv := (&fakeServer{nat: true, mapping: c.m, filtering: c.f, lossPercent: 20, rng: rand.New(rand.NewPCG(1, 2))}).start(b)
			correct := 0
			for b.Loop() {
				obs, err := Probe(context.Background(), probeOpts(srv.primary()))
				if err != nil {
					b.Fatal(err)
				}
				r := Classify(obs)
				if r.Mapping == c.m && r.Filtering == c.f {
					correct++
				}
			}
			b.ReportMetric(float64(correct)/float64(b.N), "correct/op")
		})
	}
}

func (b Behavior) short() string {
	switch b {
	case EndpointIndependent:
		return "EI"
	case AddressDependent:
		return "AD"
	case AddressAndPortDependent:
		return "APD"
	}
	return string(b)
}
