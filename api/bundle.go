package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/loaxa/loaxa/audit"
	"github.com/loaxa/loaxa/broadcast"
)

// Evidence bundles and seals (DESIGN.md, "Compliance"; the format is
// described in package audit).
//
//	GET  /api/v1/audit/bundle?period=2026-12|2026-H2|2026[&unit=U]
//	     admin, or an auditor of the whole tree: the tar.gz
//	POST /api/v1/audit/seal?period=YYYY-MM
//	     admin, or an auditor of the whole tree: 201 the seal; 409 when the
//	     month or its 7 days of grace are not over, or it is sealed already
//	GET  /api/v1/audit/seals
//	     admin, auditor: every seal, its record decoded
//
// Why the whole tree. A bundle's as-run entries must be a contiguous run
// of the hash chain to be verifiable, and the chain covers every entry's
// payload, so a bundle holds every unit's entries of its period; unit=
// only records which stations the auditor is after. A token scoped to a
// unit would read other units' evidence through it, so it is refused (403);
// GET /api/v1/asrun gives such a token its unit's entries. A seal likewise
// fixes the whole log.
//
// Why auditors may seal, though API.md has them "write nothing": a seal
// changes no record; it writes down, in the operations log, hashes that
// already are — it is the auditor's act of closing the books, and the
// operations log names who did it. Operators may not: they make the
// evidence, and should not also fix it.

// sealMu makes "not sealed yet? then seal" one step: the check reads the
// operations log and the append is another transaction, so two concurrent
// requests could both pass the check. One mutex per process is enough: only
// this daemon writes its bbolt file.
var sealMu sync.Mutex

// opAppender is the one store method sealing needs beyond Store. It is
// asserted rather than added to Store so that this extension stays in this
// file; *storage.Store has it.
type opAppender interface {
	AppendOp(ctx context.Context, op broadcast.OpEntry) (broadcast.OpEntry, error)
}

// wholeTree refuses tokens scoped to a unit, for what covers every unit.
func wholeTree(tok broadcast.Token, what string) error {
	if tok.UnitPath != "" {
		return broadcast.Errorf(broadcast.EForbidden,
			"%s covers the whole log, every unit's entries (the hash chain cannot be checked with some left out), so it needs a token of the whole tree; this token is for unit %s (GET /api/v1/asrun gives its entries)",
			what, tok.Unit)
	}
	return nil
}

// wholeTreeOnly refuses tokens scoped to a unit, for what is every unit's.
func wholeTreeOnly(tok broadcast.Token, what, why string) error {
	if tok.UnitPath != "" {
		return broadcast.Errorf(broadcast.EForbidden, "%s needs a token of the whole tree (%s); this token is for unit %s", what, why, tok.Unit)
	}
	return nil
}

func (s *Server) bundle(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	if err := wholeTree(tok, "an evidence bundle"); err != nil {
		s.error(w, r, err)
		return
	}
	q := r.URL.Query()
	period, err := broadcast.ParsePeriod(q.Get("period"))
	if err != nil {
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "period", "%v", err))
		return
	}
	spec := audit.BundleSpec{Period: period, Location: s.opts.Location, Now: s.opts.Now(), Generator: "loaxad", TempDir: s.opts.TempDir}
	name := "loaxa-evidence-" + period.Name
	if code := q.Get("unit"); code != "" {
		u, err := s.opts.Store.Unit(code)
		if err != nil {
			s.error(w, r, err)
			return
		}
		stations, err := s.opts.Store.Stations(u.Path)
		if err != nil {
			s.error(w, r, err)
			return
		}
		spec.Unit = u.Code
		for _, st := range stations {
			spec.Stations = append(spec.Stations, st.ID)
		}
		name += "-" + u.Code
	}
	// WriteBundle reads everything before it writes: until the first byte,
	// an error can still be answered with a status and a message.
	out := &deferredHeader{w: w, header: func(h http.Header) {
		h.Set("Content-Type", "application/gzip")
		h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.tar.gz"`, name))
	}}
	if _, err := audit.WriteBundle(r.Context(), out, s.opts.Store, spec); err != nil {
		if !out.started {
			s.error(w, r, err)
			return
		}
		// The status line is gone; a truncated gzip stream is the signal
		// (a verifier refuses it), and the log says why.
		s.log.Error("stream evidence bundle", "period", period.Name, "err", err)
	}
}

// deferredHeader sets the response's headers on the first write.
type deferredHeader struct {
	w       http.ResponseWriter
	header  func(http.Header)
	started bool
}

func (d *deferredHeader) Write(p []byte) (int, error) {
	if !d.started {
		d.started = true
		d.header(d.w.Header())
	}
	return d.w.Write(p)
}

// sealAnswer is what POST /audit/seal and GET /audit/seals show of a seal.
type sealAnswer struct {
	Op   sealOp           `json:"op"`
	Seal audit.SealRecord `json:"seal"`
}

type sealOp struct {
	Seq   uint64         `json:"seq"`
	Hash  broadcast.Hash `json:"hash"`
	At    time.Time      `json:"at"`
	Actor string         `json:"actor"`
}

func sealAnswerOf(o broadcast.OpEntry, rec audit.SealRecord) sealAnswer {
	return sealAnswer{Op: sealOp{Seq: o.Seq, Hash: o.Hash, At: o.At, Actor: o.Actor}, Seal: rec}
}

func (s *Server) seal(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	if err := wholeTree(tok, "a seal"); err != nil {
		s.error(w, r, err)
		return
	}
	month, err := broadcast.ParseMonth(r.URL.Query().Get("period"))
	if err != nil {
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "period", "%v (a seal is for one month)", err))
		return
	}
	store, ok := s.opts.Store.(opAppender)
	if !ok {
		s.error(w, r, fmt.Errorf("seal %s: the store cannot append to the operations log", month))
		return
	}
	sealMu.Lock()
	defer sealMu.Unlock()
	rec, err := audit.Seal(r.Context(), s.opts.Store, month, s.opts.Location, s.opts.Now())
	if err != nil {
		s.error(w, r, err)
		return
	}
	op, err := audit.SealOp(rec, actor(tok), s.opts.Now())
	if err != nil {
		s.error(w, r, err)
		return
	}
	logged, err := store.AppendOp(r.Context(), op)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.log.Info("period sealed", "period", month, "op", logged.Seq, "asrun_last", rec.AsRun.LastSeq, "by", tok.ID)
	writeJSON(w, http.StatusCreated, sealAnswerOf(logged, rec))
}

func (s *Server) seals(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	out := []sealAnswer{}
	err := s.opts.Store.Ops(0, func(o broadcast.OpEntry) error {
		if o.Action != audit.ActionSeal {
			return nil
		}
		var rec audit.SealRecord
		if err := json.Unmarshal(o.Detail, &rec); err != nil {
			return fmt.Errorf("seal record in operation %d: %w", o.Seq, err)
		}
		out = append(out, sealAnswerOf(o, rec))
		return nil
	})
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"seals": out})
}
