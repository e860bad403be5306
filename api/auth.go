package api

import (
	"context"
	"fmt"
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
	tok, err := s.opts.Store.TokenByHash(broadcast.HashToken(strings.TrimSpace(secret)))
	if err != nil {
		if broadcast.IsNotFound(err) {
			return broadcast.Token{}, broadcast.Errorf(broadcast.EUnauthorized, "the token is not valid")
		}
		return broadcast.Token{}, fmt.Errorf("look up token: %w", err)
	}
	return tok, nil
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

// deviceAuth checks HTTP Basic credentials of a device.
func (s *Server) deviceAuth(r *http.Request) bool {
	id, secret, ok := r.BasicAuth()
	if !ok || !broadcast.ValidID(id) {
		return false
	}
	d, err := s.opts.Store.Device(id)
	if err != nil || d.Disabled {
		// Spend the same effort on an unknown device as on a wrong secret,
		// so that the answer time does not reveal which ids exist.
		broadcast.VerifySecret(dummyHash, secret)
		return false
	}
	return broadcast.VerifySecret(d.SecretHash, secret)
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
