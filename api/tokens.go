package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// Tokens have a lifecycle: created (POST /api/v1/tokens, with an optional
// expiry), listed (GET), revoked (DELETE /api/v1/tokens/{id}), expired. Each
// of these is an entry of the operations log; use is not, but the last use
// is kept on the token, written at most once a minute per token.

type tokenRequest struct {
	Name    string         `json:"name"`
	Role    broadcast.Role `json:"role"`
	Unit    string         `json:"unit"`
	Expires *time.Time     `json:"expires,omitempty"`
}

type tokenResponse struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	Role      broadcast.Role `json:"role"`
	Unit      string         `json:"unit"`
	ExpiresAt time.Time      `json:"expires_at,omitzero"`
	Token     string         `json:"token"`
}

// tokenView is a token as GET /api/v1/tokens shows it: never its secret
// nor its hash (broadcast.Token keeps the hash out of JSON).
type tokenView struct {
	broadcast.Token
	Expired bool `json:"expired,omitempty"`
}

// touchEvery is how often a token's last use is written: at most one
// write (and fsync) a minute per token, not one per request.
const touchEvery = time.Minute

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, by broadcast.Token) {
	var req tokenRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	req.Name = broadcast.NFC(strings.TrimSpace(req.Name))
	if req.Name == "" || len(req.Name) > 200 {
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "name", "a token needs a name of 1-200 characters, e.g. the person or script that uses it"))
		return
	}
	if !req.Role.Valid() {
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "role", "role %q is not admin, operator or auditor", req.Role))
		return
	}
	var path string
	if req.Unit != "" {
		u, err := s.opts.Store.Unit(req.Unit)
		if err != nil {
			if broadcast.IsNotFound(err) {
				err = broadcast.FieldError(broadcast.EInvalid, "unit", "unit %q does not exist; import units first", req.Unit)
			}
			s.error(w, r, err)
			return
		}
		path = u.Path
	}
	if err := scope(by, path, "unit "+req.Unit); err != nil {
		s.error(w, r, err)
		return
	}
	now := s.opts.Now()
	var expires time.Time
	if req.Expires != nil {
		expires = *req.Expires
		if !expires.After(now) {
			s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "expires", "expires %s is not in the future", expires.Format(time.RFC3339)))
			return
		}
	}
	if max := s.opts.TokenMaxAge; max > 0 && req.Role != broadcast.RoleAdmin {
		limit := now.Add(max)
		switch {
		case expires.IsZero():
			expires = limit
		case expires.After(limit):
			s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "expires",
				"an %s token may live at most %s (tokens.max_age), until %s; expires %s is later",
				req.Role, max, limit.Format(time.RFC3339), expires.Format(time.RFC3339)))
			return
		}
	}
	secret := broadcast.NewTokenSecret()
	tok := broadcast.Token{ID: broadcast.NewID(now), Name: req.Name, Role: req.Role, Unit: req.Unit, UnitPath: path,
		Hash: broadcast.HashToken(secret), CreatedAt: now, CreatedBy: by.ID, ExpiresAt: expires}
	d := map[string]string{"name": req.Name, "role": string(req.Role), "unit": req.Unit}
	if !expires.IsZero() {
		d["expires"] = expires.UTC().Format(time.RFC3339)
	}
	detail, _ := json.Marshal(d)
	op := &broadcast.OpEntry{At: now, Actor: actor(by), Action: "token.create", Subject: tok.ID, Detail: detail, Unit: tok.UnitPath}
	if err := s.opts.Store.PutToken(r.Context(), tok, op); err != nil {
		s.error(w, r, err)
		return
	}
	s.log.Info("token created", "token_id", tok.ID, "role", tok.Role, "unit", tok.Unit, "expires", expires, "by", by.ID)
	writeJSON(w, http.StatusCreated, tokenResponse{ID: tok.ID, Name: tok.Name, Role: tok.Role, Unit: tok.Unit, ExpiresAt: expires, Token: secret})
}

// listTokens answers GET /api/v1/tokens (admin): the tokens of the
// caller's unit and below, without secrets, oldest first.
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, by broadcast.Token) {
	all, err := s.opts.Store.Tokens()
	if err != nil {
		s.error(w, r, err)
		return
	}
	now := s.opts.Now()
	out := make([]tokenView, 0, len(all))
	for _, t := range all {
		if !tokenCovered(by, t) {
			continue
		}
		out = append(out, tokenView{Token: t, Expired: t.Expired(now)})
	}
	slices.SortStableFunc(out, func(a, b tokenView) int { return a.CreatedAt.Compare(b.CreatedAt) })
	writeJSON(w, http.StatusOK, map[string]any{"tokens": out})
}

// tokenCovered reports whether by may see and revoke t: an admin of the
// whole tree every token, a scoped admin the tokens scoped at or below its
// unit (not the whole tree's, which are above it).
func tokenCovered(by, t broadcast.Token) bool {
	if by.UnitPath == "" {
		return true
	}
	return t.UnitPath != "" && by.Covers(t.UnitPath)
}

// revokeToken answers DELETE /api/v1/tokens/{id} (admin): the token stops
// working at the next request, and the console's sessions signed in with
// it end.
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, by broadcast.Token) {
	id := r.PathValue("id")
	t, err := s.tokens.Token(id)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if !tokenCovered(by, t) {
		// Answered as not found: a scoped admin learns nothing of the
		// tokens above it.
		s.error(w, r, broadcast.Errorf(broadcast.ENotFound, "no token %s in the unit of this token", id))
		return
	}
	now := s.opts.Now()
	detail, _ := json.Marshal(map[string]string{"name": t.Name, "role": string(t.Role), "unit": t.Unit})
	op := &broadcast.OpEntry{At: now, Actor: actor(by), Action: "token.revoke", Subject: t.ID, Detail: detail, Unit: t.UnitPath}
	if err := s.tokens.DeleteToken(r.Context(), t.ID, op); err != nil {
		s.error(w, r, err)
		return
	}
	s.log.Info("token revoked", "token_id", t.ID, "role", t.Role, "unit", t.Unit, "by", by.ID, "self", t.ID == by.ID)
	if s.opts.TokenRevoked != nil {
		s.opts.TokenRevoked(t.ID)
	}
	writeJSON(w, http.StatusOK, tokenView{Token: t})
}

// tokenStore is what the token lifecycle needs beyond Store. It is
// asserted, not added to Store, so that fakes of Store in other tests keep
// compiling; *storage.Store has it.
type tokenStore interface {
	Token(id string) (broadcast.Token, error)
	DeleteToken(ctx context.Context, id string, op *broadcast.OpEntry) error
	TouchToken(ctx context.Context, id string, at time.Time) error
}

// expire deletes an expired token with its operations-log entry. Two
// requests may find it expired at once; the second finds it gone.
func expire(ctx context.Context, ts tokenStore, t broadcast.Token, now time.Time) error {
	detail, _ := json.Marshal(map[string]string{"name": t.Name, "role": string(t.Role), "unit": t.Unit, "expires": t.ExpiresAt.UTC().Format(time.RFC3339)})
	op := &broadcast.OpEntry{At: now, Actor: "system", Action: "token.expire", Subject: t.ID, Detail: detail, Unit: t.UnitPath}
	if err := ts.DeleteToken(ctx, t.ID, op); err != nil && !broadcast.IsNotFound(err) {
		return err
	}
	return nil
}

// ExpireTokens removes every token past its expiry, each with a
// token.expire entry in the operations log, and returns how many. The
// daemon runs it at start and every hour, so that a token nobody uses
// still leaves the list (and the log says when) once it expires.
func (s *Server) ExpireTokens(ctx context.Context) (int, error) {
	all, err := s.opts.Store.Tokens()
	if err != nil {
		return 0, fmt.Errorf("expire tokens: %w", err)
	}
	now := s.opts.Now()
	n := 0
	for _, t := range all {
		if !t.Expired(now) {
			continue
		}
		if err := expire(ctx, s.tokens, t, now); err != nil {
			return n, fmt.Errorf("expire token %s: %w", t.ID, err)
		}
		s.log.Info("token expired", "token_id", t.ID, "role", t.Role, "unit", t.Unit, "expired_at", t.ExpiresAt)
		if s.opts.TokenRevoked != nil {
			s.opts.TokenRevoked(t.ID)
		}
		n++
	}
	return n, nil
}

// touch writes the token's last use when the stored one is older than
// touchEvery; concurrent requests of one token write it once.
func (s *Server) touch(ctx context.Context, t broadcast.Token, now time.Time) {
	if now.Sub(t.LastUsed) < touchEvery {
		return
	}
	if _, busy := s.touching.LoadOrStore(t.ID, struct{}{}); busy {
		return
	}
	defer s.touching.Delete(t.ID)
	if err := s.tokens.TouchToken(context.WithoutCancel(ctx), t.ID, now); err != nil {
		// The request goes on: a last-use time is not worth refusing it.
		s.log.Warn("could not record a token's last use", "token_id", t.ID, "err", err)
	}
}
