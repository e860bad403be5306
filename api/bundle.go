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

// Evidence bundles and seals (docs/design.md, "Compliance"; docs/evidence.md
// describes the format, audit builds and checks it).
//
//	GET  /api/v1/audit/bundle?period=2026-12|2026-H2|2026[&unit=U]
//	     admin or auditor. A token of the whole tree gets the whole log's
//	     segment (unit= only records which stations the auditor is after);
//	     a token of unit U (or unit= below it) gets U's bundle: U's
//	     entries in full and every other unit's as its content hash, 409
//	     when the period holds other units' entries chained before the
//	     switch-over to content hashes (they cannot be left out)
//	POST /api/v1/audit/seal?period=YYYY-MM
//	     admin, or an auditor of the whole tree: 201 the seal; 409 when the
//	     month or its 7 days of grace are not over, or it is sealed already
//	GET  /api/v1/audit/seals
//	     admin, auditor: every seal, its record decoded
//
// A seal fixes the whole log and every station's figures, so it needs the
// whole tree.
//
// Why auditors may seal, though docs/api.md has them "write nothing": a seal
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

// figureStore is what sealed figures need of the store; *storage.Store has
// it (asserted, as opAppender is).
type figureStore interface {
	FiguresKey() ([]byte, error)
	AppendSeal(ctx context.Context, op broadcast.OpEntry, month broadcast.Month, figures []byte) (broadcast.OpEntry, error)
	SealedFigures(month broadcast.Month) ([]byte, error)
}

// wholeTree refuses tokens scoped to a unit, for what covers every unit.
func wholeTree(tok broadcast.Token, what string) error {
	if tok.UnitPath != "" {
		return broadcast.Errorf(broadcast.EForbidden,
			"%s covers every unit's entries and figures, so it needs a token of the whole tree; this token is for unit %s (GET /api/v1/asrun gives its entries, GET /api/v1/audit/bundle its evidence)",
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

// planOf is what period required of stations (path: the unit they lie
// below, "" for all): their airings of its months as planned, their enabled
// devices, the policy.
func (s *Server) planOf(period broadcast.Period, path string, stations []broadcast.Station) (*audit.Plan, error) {
	plan := &audit.Plan{Months: period.Months, Policy: s.opts.Policy, Stations: []audit.PlanStation{}, Airings: []audit.PlanAiring{}}
	ids := make([]string, 0, len(stations))
	ours := map[string]bool{}
	for _, st := range stations {
		ids = append(ids, st.ID)
		ours[st.ID] = true
	}
	enabled := map[string]int{}
	err := s.opts.Store.StationMonths(ids, period.Months[:1], func(st string, _ broadcast.Month, _ []broadcast.AiringSummary, n int) error {
		enabled[st] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("plan of %s: %w", period.Name, err)
	}
	for _, st := range stations {
		plan.Stations = append(plan.Stations, audit.PlanStation{ID: st.ID, Name: st.Name, Unit: st.Unit, Devices: enabled[st.ID]})
	}
	for _, m := range period.Months {
		airings, err := s.opts.Store.QueryAirings(broadcast.AiringFilter{Month: m, StationPath: path})
		if err != nil {
			return nil, fmt.Errorf("plan of %s: %w", period.Name, err)
		}
		for _, a := range airings {
			// Emergency broadcasts are owed nothing (audit.Judge).
			if ours[a.Station] && a.Kind != broadcast.KindEmergency {
				plan.Airings = append(plan.Airings, audit.PlanAiringOf(a))
			}
		}
	}
	return plan, nil
}

// sealedFigures reads the figures kept with a month's seal (nil: none).
func (s *Server) sealedFigures(month broadcast.Month) ([]audit.SealedFigure, error) {
	fs, ok := s.opts.Store.(figureStore)
	if !ok {
		return nil, nil
	}
	b, err := fs.SealedFigures(month)
	if err != nil || b == nil {
		return nil, err
	}
	var figs []audit.SealedFigure
	if err := json.Unmarshal(b, &figs); err != nil {
		return nil, fmt.Errorf("sealed figures of %s: %w", month, err)
	}
	return figs, nil
}

func (s *Server) bundle(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	q := r.URL.Query()
	period, err := broadcast.ParsePeriod(q.Get("period"))
	if err != nil {
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "period", "%v", err))
		return
	}
	spec := audit.BundleSpec{Period: period, Location: s.opts.Location, Now: s.opts.Now(), Generator: "loaxad", TempDir: s.opts.TempDir, Sealed: s.sealedFigures}
	name := "loaxa-evidence-" + period.Name
	code := q.Get("unit")
	if code == "" && tok.UnitPath != "" {
		code = tok.Unit
	}
	path := ""
	if code != "" {
		u, err := s.opts.Store.Unit(code)
		if err != nil {
			s.error(w, r, err)
			return
		}
		if err := scope(tok, u.Path, "unit "+u.Code); err != nil {
			s.error(w, r, err)
			return
		}
		path = u.Path
		spec.Unit, spec.UnitPath = u.Code, u.Path
		// A token of a unit reads its unit's entries only; the others'
		// are given as their content hashes, which keep the chain whole.
		spec.Withhold = tok.UnitPath != ""
		name += "-" + u.Code
	}
	stations, err := s.opts.Store.Stations(path)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if code != "" {
		for _, st := range stations {
			spec.Stations = append(spec.Stations, st.ID)
		}
	}
	if spec.Plan, err = s.planOf(period, path, stations); err != nil {
		s.error(w, r, err)
		return
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
	fs, figures := s.opts.Store.(figureStore)
	var (
		plan *audit.Plan
		key  []byte
	)
	if figures {
		stations, err := s.opts.Store.Stations("")
		if err != nil {
			s.error(w, r, err)
			return
		}
		if plan, err = s.planOf(broadcast.Period{Name: string(month), Months: []broadcast.Month{month}}, "", stations); err != nil {
			s.error(w, r, err)
			return
		}
		if key, err = fs.FiguresKey(); err != nil {
			s.error(w, r, err)
			return
		}
	}
	sealMu.Lock()
	defer sealMu.Unlock()
	rec, figs, err := audit.SealWithFigures(r.Context(), s.opts.Store, month, s.opts.Location, s.opts.Now(), plan, key)
	if err != nil {
		s.error(w, r, err)
		return
	}
	op, err := audit.SealOp(rec, actor(tok), s.opts.Now())
	if err != nil {
		s.error(w, r, err)
		return
	}
	var logged broadcast.OpEntry
	if figures {
		b, err := json.Marshal(figs)
		if err != nil {
			s.error(w, r, fmt.Errorf("seal %s: %w", month, err))
			return
		}
		logged, err = fs.AppendSeal(r.Context(), op, month, b)
		if err != nil {
			s.error(w, r, err)
			return
		}
	} else if logged, err = store.AppendOp(r.Context(), op); err != nil {
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

// sealedMonths are the seals of period's months that recorded figures,
// with the figures kept beside them.
func (s *Server) sealedMonths(period broadcast.Period) (map[broadcast.Month]audit.SealedMonth, error) {
	months := map[string]bool{}
	for _, m := range period.Months {
		months[string(m)] = true
	}
	out := map[broadcast.Month]audit.SealedMonth{}
	err := s.opts.Store.Ops(0, func(o broadcast.OpEntry) error {
		if o.Action != audit.ActionSeal || !months[o.Subject] {
			return nil
		}
		var rec audit.SealRecord
		if err := json.Unmarshal(o.Detail, &rec); err != nil {
			return fmt.Errorf("seal record in operation %d: %w", o.Seq, err)
		}
		if rec.Figures == nil {
			return nil
		}
		figs, err := s.sealedFigures(broadcast.Month(o.Subject))
		if err != nil || figs == nil {
			return err
		}
		sm := audit.SealedMonth{Op: o.Seq, At: o.At, LastSeq: rec.AsRun.LastSeq, Figures: make(map[string]audit.Figure, len(figs))}
		for _, f := range figs {
			sm.Figures[f.Station] = f.Figure
		}
		out[broadcast.Month(o.Subject)] = sm
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("seals of %s: %w", period.Name, err)
	}
	return out, nil
}
