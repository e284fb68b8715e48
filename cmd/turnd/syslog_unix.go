//go:build !windows && !plan9

package main

import (
	"io"
	"log/syslog"
)

// syslogPriority is a syslog facility (and severity), as log/syslog has it.
type syslogPriority = syslog.Priority

var syslogFacilities = map[string]syslogPriority{
	"daemon": syslog.LOG_DAEMON, "user": syslog.LOG_USER, "auth": syslog.LOG_AUTH,
	"local0": syslog.LOG_LOCAL0, "local1": syslog.LOG_LOCAL1, "local2": syslog.LOG_LOCAL2, "local3": syslog.LOG_LOCAL3,
	"local4": syslog.LOG_LOCAL4, "local5": syslog.LOG_LOCAL5, "local6": syslog.LOG_LOCAL6, "local7": syslog.LOG_LOCAL7,
}

// syslogDial connects to the local syslog; tests point it elsewhere.
var syslogDial = func(facility syslogPriority) (io.WriteCloser, error) {
	return syslog.New(facility|syslog.LOG_INFO, "turnd")
}
