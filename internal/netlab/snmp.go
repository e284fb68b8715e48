//go:build linux

package netlab

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// UDPCounters reads the UDP counters of namespace ns: the `Udp:` table of
// /proc/net/snmp under their own names (InDatagrams, RcvbufErrors,
// InCsumErrors, ...) and the Udp6* lines of /proc/net/snmp6 under theirs
// (Udp6InCsumErrors, ...).
func UDPCounters(ns string) (map[string]uint64, error) {
	snmp, err := Run(ns, "cat", "/proc/net/snmp", "/proc/net/snmp6")
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	var names []string
	sc := bufio.NewScanner(strings.NewReader(snmp))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && strings.HasPrefix(f[0], "Udp6"):
			if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				out[f[0]] = v
			}
		case len(f) > 0 && f[0] == "Udp:":
			if names == nil {
				names = f
				continue
			}
			for i, n := range names[1:] {
				if i+1 < len(f) {
					if v, err := strconv.ParseUint(f[i+1], 10, 64); err == nil {
						out[n] = v
					}
				}
			}
		}
	}
	return out, nil
}

// UDPCsumErrors reads `Udp: InCsumErrors` and `Udp6InCsumErrors` in
// namespace ns: datagrams the stack received with a wrong checksum.
func UDPCsumErrors(ns string) (v4, v6 uint64, err error) {
	c, err := UDPCounters(ns)
	if err != nil {
		return 0, 0, err
	}
	v4, ok4 := c["InCsumErrors"]
	v6, ok6 := c["Udp6InCsumErrors"]
	if !ok4 || !ok6 {
		return 0, 0, fmt.Errorf("netlab: no UDP InCsumErrors counters in %s's /proc/net/snmp{,6}", ns)
	}
	return v4, v6, nil
}
