package conf

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// Logger builds the structured logger every command uses from its
// --log-format (text or json) and --log-level (debug, info, warn, error)
// settings. It always returns a usable logger (text at info for what it
// could not parse) together with every problem found.
func Logger(w io.Writer, format, level string) (*slog.Logger, error) {
	var errs []error
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		errs = append(errs, fmt.Errorf("log-level %q: want debug, info, warn or error", level))
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), errors.Join(errs...)
	case "text":
	default:
		errs = append(errs, fmt.Errorf("log-format %q: want text or json", format))
	}
	return slog.New(slog.NewTextHandler(w, opts)), errors.Join(errs...)
}
