package relay

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLoggerFactory routes pion's logs to the operator's logger at Debug
// only, and counts them by level. pion logs some per-packet events at Info
// and Error (a malformed packet from anyone on the internet is not an
// operator's error), so letting them through would give an attacker a way
// to flood the log.
type pionLoggerFactory struct {
	log     *slog.Logger
	metrics *metrics
}

func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("component", "pion/"+scope), metrics: f.metrics}
}

type pionLogger struct {
	log     *slog.Logger
	metrics *metrics
}

func (l pionLogger) emit(level string, msg string) {
	if level != "debug" {
		l.metrics.pionEvents.WithLabelValues(level).Inc()
	}
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(msg, "pion_level", level)
	}
}

func (l pionLogger) emitf(level, format string, args ...any) {
	if level != "debug" {
		l.metrics.pionEvents.WithLabelValues(level).Inc()
	}
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...), "pion_level", level)
	}
}

func (l pionLogger) Trace(msg string)                  {}
func (l pionLogger) Tracef(format string, args ...any) {}
func (l pionLogger) Debug(msg string)                  { l.emit("debug", msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.emitf("debug", format, args...) }
func (l pionLogger) Info(msg string)                   { l.emit("info", msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.emitf("info", format, args...) }
func (l pionLogger) Warn(msg string)                   { l.emit("warn", msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.emitf("warn", format, args...) }
func (l pionLogger) Error(msg string)                  { l.emit("error", msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.emitf("error", format, args...) }
