package api

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// authed is a handler that knows who asks.
type authed func(w http.ResponseWriter, r *http.Request, tok broadcast.Token)

// auth admits a request with a valid bearer token of one of the roles.
func (s *Server) auth(h authed, roles ...broadcast.Role) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, err := s.token(r)
		if err != nil {
			s.error(w, r, err)
			return
		}
		if !slices.Contains(roles, tok.Role) {
			s.error(w, r, broadcast.Errorf(broadcast.EForbidden, "the %s role may not %s %s", tok.Role, r.Method, r.URL.Path))
			return
		}
		h(w, r, tok)
	}
}

func (s *Server) token(r *http.Request) (broadcast.Token, error) {
	h := r.Header.Get("Authorization")
	secret, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || strings.TrimSpace(secret) == "" {
		return broadcast.Token{}, broadcast.Errorf(broadcast.EUnauthorized, "this endpoint needs an Authorization: Bearer <token> header")
	}
	addr := clientAddr(r)
	now := s.opts.Now()
	if err := s.throttled(addr, now); err != nil {
		return broadcast.Token{}, err
	}
	tok, err := s.opts.Store.TokenByHash(broadcast.HashToken(strings.TrimSpace(secret)))
	if err != nil {
		if broadcast.IsNotFound(err) {
			s.authFailed(r, addr, "unknown_token", now)
			return broadcast.Token{}, broadcast.Errorf(broadcast.EUnauthorized, "the token is not valid: it was revoked, has expired or never existed")
		}
		return broadcast.Token{}, fmt.Errorf("look up token: %w", err)
	}
	if tok.Expired(now) {
		if err := expire(r.Context(), s.tokens, tok, now); err != nil {
			return broadcast.Token{}, fmt.Errorf("expire token %s: %w", tok.ID, err)
		}
		s.log.Info("token expired", "token_id", tok.ID, "role", tok.Role, "unit", tok.Unit, "expired_at", tok.ExpiresAt)
		if s.opts.TokenRevoked != nil {
			s.opts.TokenRevoked(tok.ID)
		}
		s.authFailed(r, addr, "expired_token", now)
		return broadcast.Token{}, broadcast.Errorf(broadcast.EUnauthorized, "the token expired at %s; ask an administrator for a new one", tok.ExpiresAt.Format(time.RFC3339))
	}
	s.touch(r.Context(), tok, now)
	return tok, nil
}

// clientAddr is the address a request came from, without the port: the
// key of the failed-authentication throttle.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// throttledError is a refusal because the client failed too often: 429
// with Retry-After.
type throttledError struct{ wait time.Duration }

func (e *throttledError) Error() string { return e.Unwrap().Error() }
func (e *throttledError) Unwrap() error {
	return broadcast.Errorf(broadcast.ERateLimited, "too many failed sign-ins or bad tokens from this address: try again in %d s", retrySeconds(e.wait))
}

func retrySeconds(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }

// throttled refuses a client address that must still wait after its
// failed attempts, without checking what it sent.
func (s *Server) throttled(addr string, now time.Time) error {
	if wait := s.authFails.Wait(addr, now); wait > 0 {
		s.authThrottled.Inc()
		return &throttledError{wait: wait}
	}
	return nil
}

// authFailed counts and logs a failed authentication (never what was sent)
// and makes its address wait once it failed too often. While it waits, its
// attempts are refused unlogged: the log is not a lever to fill the disk.
func (s *Server) authFailed(r *http.Request, addr, reason string, now time.Time) {
	s.authFailures.WithLabelValues(reason).Inc()
	wait := s.authFails.Fail(addr, now)
	s.log.Warn("authentication failed", "remote", addr, "reason", reason, "method", r.Method, "path", r.URL.Path, "backoff", wait)
}

// scope refuses what lies outside the token's unit.
func scope(tok broadcast.Token, path, what string) error {
	if !tok.Covers(path) {
		return broadcast.Errorf(broadcast.EForbidden, "%s is outside the unit of this token (%s)", what, tok.Unit)
	}
	return nil
}

// unitParam is the unit a request names in its unit= parameter, checked
// against the token's scope; without one, the token's own unit ("" code and
// path for an unscoped token).
func (s *Server) unitParam(r *http.Request, tok broadcast.Token) (code, path string, err error) {
	code = r.URL.Query().Get("unit")
	if code == "" {
		return tok.Unit, tok.UnitPath, nil
	}
	u, err := s.opts.Store.Unit(code)
	if err != nil {
		return "", "", err
	}
	if err := scope(tok, u.Path, "unit "+code); err != nil {
		return "", "", err
	}
	return u.Code, u.Path, nil
}

// actor names who did something in the operations log.
func actor(tok broadcast.Token) string { return tok.ID + " " + tok.Name }

// deviceAuth checks HTTP Basic credentials of a device and returns it.
// Wrong credentials count against the client address, like bad tokens: a
// device secret is a PBKDF2 hash, and a flood of guesses costs CPU.
func (s *Server) deviceAuth(r *http.Request) (broadcast.Device, error) {
	refused := broadcast.Errorf(broadcast.EUnauthorized, "device id or secret is wrong, or the device is disabled")
	addr := clientAddr(r)
	now := s.opts.Now()
	if err := s.throttled(addr, now); err != nil {
		return broadcast.Device{}, err
	}
	id, secret, ok := r.BasicAuth()
	if !ok || !broadcast.ValidID(id) {
		s.authFailed(r, addr, "bad_device", now)
		return broadcast.Device{}, refused
	}
	d, err := s.opts.Store.Device(id)
	if err != nil || d.Disabled {
		// Spend the same effort on an unknown device as on a wrong secret,
		// so that the answer time does not reveal which ids exist.
		broadcast.VerifySecret(dummyHash, secret)
		s.authFailed(r, addr, "bad_device", now)
		return broadcast.Device{}, refused
	}
	if !broadcast.VerifySecret(d.SecretHash, secret) {
		s.authFailed(r, addr, "bad_device", now)
		return broadcast.Device{}, refused
	}
	return d, nil
}

var dummyHash = broadcast.HashSecret("not a secret")

// Bootstrap creates the first admin token when there is none, writes it to
// dir/admin.token (mode 0600) and returns the file's path; it logs the
// path, never the token. With tokens already present it does nothing.
func Bootstrap(ctx context.Context, store interface {
	Tokens() ([]broadcast.Token, error)
	PutToken(ctx context.Context, t broadcast.Token, op *broadcast.OpEntry) error
}, dir string, now func() time.Time) (string, error) {
	toks, err := store.Tokens()
	if err != nil {
		return "", fmt.Errorf("bootstrap admin token: %w", err)
	}
	if len(toks) > 0 {
		return "", nil
	}
	secret := broadcast.NewTokenSecret()
	at := now()
	tok := broadcast.Token{ID: broadcast.NewID(at), Name: "bootstrap admin", Role: broadcast.RoleAdmin, Hash: broadcast.HashToken(secret), CreatedAt: at, CreatedBy: "system"}
	path := filepath.Join(dir, "admin.token")
	// The file first: a token in the database that nobody can read would
	// lock the administrator out.
	if err := os.WriteFile(path+".tmp", []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("bootstrap admin token: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return "", fmt.Errorf("bootstrap admin token: %w", err)
	}
	op := &broadcast.OpEntry{At: at, Actor: "system", Action: "token.create", Subject: tok.ID, Detail: []byte(`{"role":"admin","name":"bootstrap admin"}`)}
	if err := store.PutToken(ctx, tok, op); err != nil {
		return "", fmt.Errorf("bootstrap admin token: %w", err)
	}
	return path, nil
}
