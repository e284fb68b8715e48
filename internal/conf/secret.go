package conf

import (
	"errors"
	"fmt"
)

// Placeholders are the secrets written in the project's example configs
// and docs. A service started with one of them is running with a secret
// everybody knows, so CheckSecret refuses them.
var Placeholders = []string{
	"change-me-to-a-long-random-string",
	"change-me",
	"changeme",
	"CHANGE_ME",
}

// MinSecretLen is the length below which CheckSecret warns. Real coturn
// configs carry short secrets, so it is a warning, not an error.
const MinSecretLen = 16

// ErrPlaceholderSecret is returned for a secret copied from an example.
var ErrPlaceholderSecret = errors.New("is the example's placeholder; generate one with `openssl rand -hex 32`")

// CheckSecret vets one secret of the setting name: an error for an empty
// or placeholder secret, a warning (non-empty string) for one shorter
// than MinSecretLen bytes. Neither ever contains the secret.
func CheckSecret(name string, secret []byte) (warning string, err error) {
	if len(secret) == 0 {
		return "", fmt.Errorf("%s is empty", name)
	}
	for _, p := range Placeholders {
		if string(secret) == p {
			return "", fmt.Errorf("%s %w", name, ErrPlaceholderSecret)
		}
	}
	if len(secret) < MinSecretLen {
		return fmt.Sprintf("%s is only %d bytes: anyone who can watch one credential can try to guess it offline; use at least %d random bytes (`openssl rand -hex 32`)", name, len(secret), MinSecretLen), nil
	}
	return "", nil
}
