package netlab

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// UDPCsumErrors reads `Udp: InCsumErrors` from /proc/net/snmp and
// `Udp6InCsumErrors` from /proc/net/snmp6 in namespace ns: datagrams the
// stack received with a wrong checksum.
func UDPCsumErrors(ns string) (v4, v6 uint64, err error) {
	snmp, err := Run(ns, "cat", "/proc/net/snmp", "/proc/net/snmp6")
	if err != nil {
		return 0, 0, err
	}
	found4, found6 := false, false
	var names []string
	sc := bufio.NewScanner(strings.NewReader(snmp))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "Udp6InCsumErrors":
			v6, err = strconv.ParseUint(f[1], 10, 64)
			found6 = err == nil
		case len(f) > 0 && f[0] == "Udp:":
			if names == nil {
				names = f
				continue
			}
			for i, n := range names {
				if n == "InCsumErrors" && i < len(f) {
					v4, err = strconv.ParseUint(f[i], 10, 64)
					found4 = err == nil
				}
			}
		}
	}
	if !found4 || !found6 {
		return 0, 0, fmt.Errorf("netlab: no UDP InCsumErrors counters in %s's /proc/net/snmp{,6}", ns)
	}
	return v4, v6, nil
}
