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
	return LoadWith(fs, args, getenv, envPrefix, fileFlag, nil)
}

// Setting is one flag value a Translator derives from a config-file line.
type Setting struct{ Name, Value string }

// A Translator gives config-file lines in a foreign vocabulary (coturn's
// turnserver.conf for turnd) their meaning. It is asked about every file
// line first. handled=false leaves the line to the FlagSet; an error
// refuses the line; otherwise the returned settings (possibly none, for a
// line that is accepted and ignored) are applied. A setting for the line's
// own name applies like a direct line; a setting for another name applies
// only when nothing else (flag, environment or an explicit file line) set
// that name, so a turnd name written in the file always beats a coturn
// name that implies it.
type Translator func(name, value string, hasValue bool) (settings []Setting, handled bool, err error)

// LoadWith is Load with a Translator for the config file (nil: none).
func LoadWith(fs *flag.FlagSet, args []string, getenv func(string) string, envPrefix, fileFlag string, tr Translator) (map[string]Source, error) {
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
			if err := loadFile(fs, f.Value.String(), src, tr); err != nil {
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

func loadFile(fs *flag.FlagSet, path string, src map[string]Source, tr Translator) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	return parseFile(fs, f, path, src, tr)
}

// implied is a translated setting for another name, applied after the
// whole file was read.
type implied struct {
	Setting
	where string
}

func parseFile(fs *flag.FlagSet, r io.Reader, path string, src map[string]Source, tr Translator) error {
	var errs []error
	var later []implied
	set := func(where, name, value string, hasValue bool) {
		fl := fs.Lookup(name)
		if fl == nil {
			errs = append(errs, fmt.Errorf("%s: unknown setting %q", where, name))
			return
		}
		if s := src[name]; s == FromFlag || s == FromEnv {
			return // a higher layer already decided
		}
		if !hasValue {
			if bf, ok := fl.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
				value = "true"
			} else {
				errs = append(errs, fmt.Errorf("%s: %s needs a value", where, name))
				return
			}
		}
		if err := fs.Set(name, value); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", where, name, err))
			return
		}
		src[name+"\x00file"] = FromFile
	}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		name, value, hasValue, ok := splitLine(sc.Text())
		if !ok {
			continue
		}
		where := fmt.Sprintf("%s:%d", path, line)
		if tr != nil {
			settings, handled, err := tr(name, value, hasValue)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %w", where, name, err))
				continue
			}
			if handled {
				for _, s := range settings {
					if s.Name == name {
						set(where, s.Name, s.Value, true)
					} else {
						later = append(later, implied{s, where})
					}
				}
				continue
			}
		}
		set(where, name, value, hasValue)
	}
	for _, s := range later {
		if _, explicit := src[s.Name+"\x00file"]; explicit || src[s.Name] == FromFlag || src[s.Name] == FromEnv {
			continue
		}
		set(s.where, s.Name, s.Value, true)
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

// splitLine reads one config-file line: "name=value", "name value" or a
// bare "name", with an optional leading "--". Blank lines and lines
// starting with # or ; are skipped (ok=false). As in coturn, a # after
// whitespace starts a comment, except inside double quotes, and one pair
// of double quotes around the value is removed.
func splitLine(raw string) (name, value string, hasValue, ok bool) {
	text := strings.TrimSpace(raw)
	if text == "" || text[0] == '#' || text[0] == ';' {
		return "", "", false, false
	}
	inQuotes := false
	for i := 1; i < len(text); i++ {
		switch {
		case text[i] == '"':
			inQuotes = !inQuotes
		case text[i] == '#' && !inQuotes && (text[i-1] == ' ' || text[i-1] == '\t'):
			text = strings.TrimSpace(text[:i])
			i = len(text)
		}
	}
	text = strings.TrimPrefix(text, "--")
	name, value, hasValue = strings.Cut(text, "=")
	if !hasValue {
		name, value, hasValue = strings.Cut(text, " ")
	}
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
		value = value[1 : len(value)-1]
	}
	return name, value, hasValue, name != ""
}

// Strings is a repeatable string flag.
type Strings []string

func (s *Strings) String() string     { return strings.Join(*s, ",") }
func (s *Strings) Set(v string) error { *s = append(*s, v); return nil }
func (s *Strings) Repeatable()        {}
