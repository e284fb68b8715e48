package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	_ "modernc.org/sqlite" // CGO-free SQLite driver, for coturn's userdb

	"github.com/rtcsuite/rtcsuite/relay"
)

// --userdb is either of two formats, told apart by the file's first bytes:
//
//   - coturn's SQLite database (what `turnadmin -b FILE` writes; its
//     header is "SQLite format 3\x00"), read read-only: long-term users
//     (turnusers_lt) of turnd's realm, REST secrets (turn_secret, with
//     --use-auth-secret), peer lists (allowed_peer_ip, denied_peer_ip,
//     unless --no-dynamic-ip-list);
//   - a text file of NAME:PASSWORD or NAME:0xKEY lines (# comments).
//
// Anything else is refused with an error that never quotes the file.

// sqliteHeader starts every SQLite 3 database file.
var sqliteHeader = []byte("SQLite format 3\x00")

// userDB is what a userdb yields.
type userDB struct {
	users   []relay.User
	secrets [][]byte
	allowed []string // allowed_peer_ip rows
	denied  []string // denied_peer_ip rows
}

// readUserDB reads path in whichever format it is.
func readUserDB(path, realm string, e extOptions) (userDB, error) {
	head := make([]byte, 4096)
	f, err := os.Open(path)
	if err != nil {
		return userDB{}, err
	}
	n, err := io.ReadFull(f, head)
	f.Close()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return userDB{}, err
	}
	head = head[:n]
	if bytes.HasPrefix(head, sqliteHeader) {
		return readSQLiteUserDB(path, realm, e)
	}
	if bytes.IndexByte(head, 0) >= 0 || !utf8.Valid(trimPartialRune(head)) {
		return userDB{}, fmt.Errorf("%s is neither a SQLite database (coturn's `turnadmin -b`) nor a text file of NAME:PASSWORD lines", path)
	}
	lines, err := readLines(path)
	if err != nil {
		return userDB{}, err
	}
	var db userDB
	var errs []error
	for _, l := range lines {
		u, err := parseUser(l, realm)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		db.users = append(db.users, u)
	}
	return db, errors.Join(errs...)
}

// trimPartialRune drops a UTF-8 sequence cut by the 4 KiB read.
func trimPartialRune(b []byte) []byte {
	for i := 0; i < utf8.UTFMax && len(b) > 0; i++ {
		r, size := utf8.DecodeLastRune(b)
		if r != utf8.RuneError || size != 1 {
			return b
		}
		b = b[:len(b)-1]
	}
	return b
}

// readSQLiteUserDB reads coturn's SQLite schema (turnadmin's
// turnusers_lt, turn_secret, allowed_peer_ip, denied_peer_ip,
// turn_realm_option) for one realm, read-only.
func readSQLiteUserDB(path, realm string, e extOptions) (userDB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return userDB{}, err
	}
	u := url.URL{Scheme: "file", Path: abs, RawQuery: "mode=ro&_pragma=query_only(1)&_pragma=busy_timeout(5000)"}
	conn, err := sql.Open("sqlite", u.String())
	if err != nil {
		return userDB{}, fmt.Errorf("%s: %w", path, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var db userDB
	var errs []error
	rows, err := conn.QueryContext(ctx, `SELECT name, hmackey FROM turnusers_lt WHERE realm = ? ORDER BY name`, realm)
	if err != nil {
		return userDB{}, fmt.Errorf("%s: not a coturn user database: %w", path, err)
	}
	for rows.Next() {
		var name, key string
		if err := rows.Scan(&name, &key); err != nil {
			errs = append(errs, fmt.Errorf("%s: turnusers_lt: %w", path, err))
			continue
		}
		k, err := hex.DecodeString(strings.TrimSpace(key))
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: user %q: hmackey is not hex", path, name))
		case len(k) != 16:
			errs = append(errs, fmt.Errorf("%s: user %q: %d-byte key (SHA-256 keys are not supported; want coturn's MD5 key)", path, name, len(k)))
		default:
			db.users = append(db.users, relay.User{Name: name, Key: k})
		}
	}
	errs = append(errs, rows.Err())
	rows.Close()

	if e.useAuthSecret {
		vals, err := column(ctx, conn, `SELECT value FROM turn_secret WHERE realm = ? ORDER BY value`, realm)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: turn_secret: %w", path, err))
		}
		for _, v := range vals {
			db.secrets = append(db.secrets, []byte(v))
		}
	}
	if !e.noDynamicIPs {
		var err error
		if db.allowed, err = column(ctx, conn, `SELECT ip_range FROM allowed_peer_ip WHERE realm = ? OR realm = '' ORDER BY ip_range`, realm); err != nil {
			errs = append(errs, fmt.Errorf("%s: allowed_peer_ip: %w", path, err))
		}
		if db.denied, err = column(ctx, conn, `SELECT ip_range FROM denied_peer_ip WHERE realm = ? OR realm = '' ORDER BY ip_range`, realm); err != nil {
			errs = append(errs, fmt.Errorf("%s: denied_peer_ip: %w", path, err))
		}
	}
	if !e.noDynamicRealm {
		opts, err := column(ctx, conn, `SELECT opt FROM turn_realm_option WHERE realm = ? ORDER BY opt`, realm)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: turn_realm_option: %w", path, err))
		} else if len(opts) > 0 {
			errs = append(errs, fmt.Errorf("%s: turn_realm_option sets %s for realm %q: per-realm options are not read; put them in the config (max-bps, user-quota, total-quota) and add no-dynamic-realms", path, strings.Join(opts, ", "), realm))
		}
	}
	return db, errors.Join(errs...)
}

// column returns one string column of a query with one parameter. A
// missing table (an older coturn schema) yields no rows.
func column(ctx context.Context, conn *sql.DB, query, arg string) ([]string, error) {
	rows, err := conn.QueryContext(ctx, query, arg)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return nil, nil
		}
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return out, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
