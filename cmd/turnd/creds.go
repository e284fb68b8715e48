package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/conf"
	"github.com/rtcsuite/rtcsuite/internal/turnrest"
)

// runCreds mints a TURN REST credential and prints it as an RTCIceServer
// JSON object: `turnd creds --secret S --user alice --url turn:host:3478`.
func runCreds(args []string, env runEnv) int {
	fs := flag.NewFlagSet("turnd creds", flag.ContinueOnError)
	secret := fs.String("secret", "", "shared secret (as --static-auth-secret); or TURND_CREDS_SECRET")
	user := fs.String("user", "", "user part of the username (quotas and ownership use it)")
	ttl := fs.Duration("ttl", 12*time.Hour, "credential lifetime")
	var urls conf.Strings
	fs.Var(&urls, "url", "ICE server URL to include (repeatable), e.g. turn:turn.example.com:3478?transport=udp")
	if _, err := conf.Load(fs, args, env.getenv, "TURND_CREDS", ""); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			conf.PrintDefaults(env.stdout, fs)
			return exitOK
		}
		fmt.Fprintf(env.stderr, "turnd creds: %v\n", err)
		return exitConfig
	}
	var problems []error
	if *secret == "" {
		problems = append(problems, errors.New("--secret is required"))
	} else if w, err := conf.CheckSecret("--secret", []byte(*secret)); err != nil {
		problems = append(problems, err)
	} else if w != "" {
		fmt.Fprintf(env.stderr, "turnd creds: warning: %s\n", w)
	}
	if *ttl <= 0 {
		problems = append(problems, errors.New("--ttl must be positive"))
	}
	if len(problems) > 0 {
		fmt.Fprintf(env.stderr, "turnd creds: %v\n", errors.Join(problems...))
		return exitConfig
	}
	if len(urls) == 0 {
		urls = conf.Strings{"turn:localhost:3478?transport=udp", "turn:localhost:3478?transport=tcp"}
	}
	c := turnrest.Mint([]byte(*secret), *user, time.Now().Add(*ttl))
	out := struct {
		URLs       []string `json:"urls"`
		Username   string   `json:"username"`
		Credential string   `json:"credential"`
	}{urls, c.Username, c.Password}
	enc := json.NewEncoder(env.stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
	fmt.Fprintf(env.stderr, "expires %s\n", c.Expires.UTC().Format(time.RFC3339))
	return exitOK
}
