package main

import (
	"errors"
	"io"
)

// syslogPriority is a syslog facility: log/syslog does not exist on
// Windows, so the facility names keep their RFC 5424 codes here and
// --syslog-facility validates as elsewhere.
type syslogPriority int

var syslogFacilities = map[string]syslogPriority{
	"daemon": 3 << 3, "user": 1 << 3, "auth": 4 << 3,
	"local0": 16 << 3, "local1": 17 << 3, "local2": 18 << 3, "local3": 19 << 3,
	"local4": 20 << 3, "local5": 21 << 3, "local6": 22 << 3, "local7": 23 << 3,
}

// syslogDial: Windows has no local syslog; --syslog fails at start-up with
// this error (use --log-file). Tests point it elsewhere.
var syslogDial = func(syslogPriority) (io.WriteCloser, error) {
	return nil, errors.New("no local syslog on Windows (use --log-file)")
}
