package api

import (
	"net/http"

	"github.com/loaxa/loaxa/audit"
	"github.com/loaxa/loaxa/broadcast"
)

// purge answers POST /api/v1/audit/purge?before=YYYY-MM (admin): it removes
// the as-run entries received before the month, when every month they
// belong to is sealed and past the retention (audit.PlanPurge says why
// not, 409), and records the purge in the operations log in the same
// transaction.
func (s *Server) purge(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	if err := wholeTreeOnly(tok, "a purge", "it removes every unit's evidence"); err != nil {
		s.error(w, r, err)
		return
	}
	before, err := broadcast.ParseMonth(r.URL.Query().Get("before"))
	if err != nil {
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "before", "%v: the first month to keep", err))
		return
	}
	// One seal or purge at a time: each reads the logs, then writes.
	sealMu.Lock()
	defer sealMu.Unlock()
	now := s.opts.Now()
	rec, err := audit.PlanPurge(r.Context(), s.opts.Store, before, s.opts.Location, now, s.opts.Retention)
	if err != nil {
		s.error(w, r, err)
		return
	}
	op, err := audit.PurgeOp(rec, actor(tok), now)
	if err != nil {
		s.error(w, r, err)
		return
	}
	res, err := s.opts.Store.PurgeAsRun(r.Context(), rec.Upto, rec.Hash, &op)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.log.Info("as-run log purged", "before", before, "upto", res.Upto, "entries", res.Entries, "op", op.Seq, "by", tok.ID)
	writeJSON(w, http.StatusOK, map[string]any{"before": before, "purge": res, "op": op.Seq})
}
