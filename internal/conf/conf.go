// Package conf layers a command's configuration: command-line flags win
// over environment variables, which win over a config file, which wins over
// the flag defaults. One flag.FlagSet describes every setting once; the
// environment variable for flag "max-port" of a command with prefix TURND
// is TURND_MAX_PORT, and the config file line is "max-port=..." (or
// "max-port ...", or a bare "no-tls" for a boolean, as in coturn's
// turnserver.conf). A repeated file line, or a comma-separated
// environment value, sets a repeatable flag several times.
package conf

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Source says where a setting's value came from.
type Source string

const (
	FromDefault Source = "default"
	FromFile    Source = "file"
	FromEnv     Source = "env"
	FromFlag    Source = "flag"
)

// Repeatable marks flag.Value types that accumulate (Set appends), so an
// environment value is split on commas for them.
type Repeatable interface {
	flag.Value
	Repeatable()
}

// Load parses args into fs, then fills every flag not given on the command
// line from the environment and then from the config file named by the
// flag fileFlag (if fs has it and it is set anywhere). It returns where
// each flag's value came from and every problem found, joined.
func Load(fs *flag.FlagSet, args []string, getenv func(string) string, envPrefix, fileFlag string) (map[string]Source, error) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	src := map[string]Source{}
	fs.VisitAll(func(f *flag.Flag) { src[f.Name] = FromDefault })
	fs.Visit(func(f *flag.Flag) { src[f.Name] = FromFlag })

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if src[f.Name] == FromFlag {
			return
		}
		v := getenv(EnvName(envPrefix, f.Name))
		if v == "" {
			return
		}
		vals := []string{v}
		if _, ok := f.Value.(Repeatable); ok {
			vals = strings.Split(v, ",")
		}
		for _, one := range vals {
			if err := fs.Set(f.Name, strings.TrimSpace(one)); err != nil {
				errs = append(errs, fmt.Errorf("environment %s: %w", EnvName(envPrefix, f.Name), err))
			}
		}
		src[f.Name] = FromEnv
	})

	if fileFlag != "" {
		if f := fs.Lookup(fileFlag); f != nil && f.Value.String() != "" {
			if err := loadFile(fs, f.Value.String(), src); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return src, errors.Join(errs...)
}

// EnvName is the environment variable for a flag.
func EnvName(prefix, flagName string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func loadFile(fs *flag.FlagSet, path string, src map[string]Source) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	return parseFile(fs, f, path, src)
}

func parseFile(fs *flag.FlagSet, r io.Reader, path string, src map[string]Source) error {
	var errs []error
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' || text[0] == ';' {
			continue
		}
		text = strings.TrimPrefix(text, "--")
		name, value, hasValue := strings.Cut(text, "=")
		if !hasValue {
			name, value, hasValue = strings.Cut(text, " ")
		}
		name, value = strings.TrimSpace(name), strings.Trim(strings.TrimSpace(value), `"`)
		fl := fs.Lookup(name)
		if fl == nil {
			errs = append(errs, fmt.Errorf("%s:%d: unknown setting %q", path, line, name))
			continue
		}
		if s := src[name]; s == FromFlag || s == FromEnv {
			continue // a higher layer already decided
		}
		if !hasValue {
			if bf, ok := fl.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
				value = "true"
			} else {
				errs = append(errs, fmt.Errorf("%s:%d: %s needs a value", path, line, name))
				continue
			}
		}
		if err := fs.Set(name, value); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %s: %w", path, line, name, err))
			continue
		}
		src[name+"\x00file"] = FromFile
	}
	for k := range src {
		if base, ok := strings.CutSuffix(k, "\x00file"); ok {
			src[base] = FromFile
			delete(src, k)
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", path, err))
	}
	return errors.Join(errs...)
}

// Strings is a repeatable string flag.
type Strings []string

func (s *Strings) String() string     { return strings.Join(*s, ",") }
func (s *Strings) Set(v string) error { *s = append(*s, v); return nil }
func (s *Strings) Repeatable()        {}
