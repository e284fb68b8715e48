package natclass_test

import (
	"context"
	"fmt"
	"net"
	"os"

	"github.com/rtcsuite/rtcsuite/natclass"
)

func ExampleProbe() {
	ctx := context.Background()
	obs, err := natclass.Probe(ctx, natclass.Options{
		Servers: []string{"turn.example.com:3478"}, // an RFC 5780 server (turnd --rfc5780)
		Family:  "ipv4",
		Listen: func(ctx context.Context) (net.PacketConn, error) {
			var lc net.ListenConfig
			return lc.ListenPacket(ctx, "udp4", "0.0.0.0:0") // a fresh port for every test
		},
		Progress: func(line string) { fmt.Fprintln(os.Stderr, line) },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	r := natclass.Classify(obs)
	fmt.Println(r.Mapping, r.Filtering, r.Classic)
	for _, why := range r.Reasons {
		fmt.Println(" -", why)
	}
}

func ExamplePredict() {
	home := natclass.Result{NAT: natclass.Yes, Mapping: natclass.EndpointIndependent, Filtering: natclass.AddressAndPortDependent}
	mobile := natclass.Result{NAT: natclass.Yes, Mapping: natclass.AddressAndPortDependent, Filtering: natclass.AddressAndPortDependent}
	office := natclass.Result{NAT: natclass.Yes, Mapping: natclass.EndpointIndependent, Filtering: natclass.EndpointIndependent}
	fmt.Println(natclass.Predict(home, home).Outcome)
	fmt.Println(natclass.Predict(mobile, office).Outcome)
	fmt.Println(natclass.Predict(home, mobile).Outcome)
	// Output:
	// direct
	// direct via peer-reflexive candidates
	// relay needed
}
