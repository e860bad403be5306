package web

import (
	"net/http"
	"net/url"
	"time"
)

// apiToken is a token as GET /api/v1/tokens lists it: never its secret.
type apiToken struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Unit      string    `json:"unit"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	ExpiresAt time.Time `json:"expires_at"`
	LastUsed  time.Time `json:"last_used"`
	Expired   bool      `json:"expired"`
}

type tokensData struct {
	Tokens []apiToken
	Self   string // the session's own token id
}

// tokens lists the tokens of the admin's unit and below, with a button to
// revoke each (GET /tokens, admins only: the API refuses the others).
func (s *Server) tokens(w http.ResponseWriter, r *http.Request, ss *session) {
	var out struct{ Tokens []apiToken }
	if err := s.get(r, ss, "/api/v1/tokens", &out); err != nil {
		s.fail(w, r, ss, err)
		return
	}
	v := s.view(r, ss, "tokens.title")
	v.Data = tokensData{Tokens: out.Tokens, Self: ss.me.ID}
	s.render(w, http.StatusOK, "tokens", v)
}

// revokeToken revokes a token (POST /tokens/{id}/revoke). Revoking the
// session's own token signs the session out with it.
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	var t apiToken
	if err := s.send(r, ss, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(id), nil, &t); err != nil {
		s.fail(w, r, ss, err)
		return
	}
	if t.ID == ss.me.ID {
		setCookie(w, r, sessionCookie, "", -1)
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	ss.setFlash(s.view(r, nil, "tokens.title").T("tokens.revoked", t.Name, t.ID))
	http.Redirect(w, r, "/tokens", http.StatusSeeOther)
}
