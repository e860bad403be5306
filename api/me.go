package api

import (
	"net/http"

	"github.com/loaxa/loaxa/broadcast"
)

// meResponse is who a token is. The web console asks it at sign-in, so that
// a pasted token is checked by the API itself and the pages can leave out
// what the role may not do.
type meResponse struct {
	ID       string         `json:"id"`
	Name     string         `json:"name"`
	Role     broadcast.Role `json:"role"`
	Unit     string         `json:"unit"`
	UnitPath string         `json:"unit_path"`
	UnitName string         `json:"unit_name,omitempty"`
}

// me answers GET /api/v1/me with the token's identity and scope.
func (s *Server) me(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	out := meResponse{ID: tok.ID, Name: tok.Name, Role: tok.Role, Unit: tok.Unit, UnitPath: tok.UnitPath}
	if tok.Unit != "" {
		// A unit dropped from the tree since the token was made still names
		// the token's scope by its code; the name is a courtesy.
		if u, err := s.opts.Store.Unit(tok.Unit); err == nil {
			out.UnitName = u.Name
		} else if !broadcast.IsNotFound(err) {
			s.error(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, out)
}
