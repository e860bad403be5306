package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

func (s *Server) location(st broadcast.Station) *time.Location {
	if st.Timezone != "" {
		if loc, err := broadcast.Zone(st.Timezone); err == nil {
			return loc
		}
	}
	return s.opts.Location
}

func (s *Server) listAirings(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	q := r.URL.Query()
	f := broadcast.AiringFilter{Station: q.Get("station"), Programme: q.Get("programme"), Status: broadcast.Status(q.Get("status")), StationPath: tok.UnitPath}
	if m := q.Get("month"); m != "" {
		month, err := broadcast.ParseMonth(m)
		if err != nil {
			s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "month", "%v", err))
			return
		}
		f.Month = month
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "limit", "limit must be a positive number"))
			return
		}
		f.Limit = n
	}
	if f.Station != "" {
		st, err := s.opts.Store.Station(f.Station)
		if err == nil {
			err = scope(tok, st.Path, "station "+st.ID)
		}
		if err != nil {
			s.error(w, r, err)
			return
		}
	}
	airings, err := s.opts.Store.QueryAirings(f)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if airings == nil {
		airings = []*broadcast.Airing{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"airings": airings})
}

// airing loads an airing the token may see, with its station.
func (s *Server) airing(w http.ResponseWriter, r *http.Request, tok broadcast.Token) (*broadcast.Airing, broadcast.Station, bool) {
	a, err := s.opts.Store.Airing(r.PathValue("id"))
	var st broadcast.Station
	if err == nil {
		st, err = s.opts.Store.Station(a.Station)
	}
	if err == nil {
		err = scope(tok, st.Path, "airing "+a.ID)
	}
	if err != nil {
		s.error(w, r, err)
		return nil, st, false
	}
	return a, st, true
}

func (s *Server) getAiring(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	if a, _, ok := s.airing(w, r, tok); ok {
		writeJSON(w, http.StatusOK, a)
	}
}

type moveRequest struct {
	Start time.Time `json:"start"`
}

// moveAiring is an operator's explicit edit. It may move an airing into the
// freeze window (that is the operator's call) but not an airing already in
// it: devices may have it cached as final.
func (s *Server) moveAiring(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	a, st, ok := s.airing(w, r, tok)
	if !ok {
		return
	}
	var req moveRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	now, p, loc := s.opts.Now(), s.opts.Policy, s.location(st)
	start := req.Start
	switch {
	case start.IsZero():
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "start", "start is required, as RFC 3339 with an offset, e.g. 2026-12-05T06:30:00+07:00"))
		return
	case !start.After(now):
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "start", "start %s is in the past", start.Format(time.RFC3339)))
		return
	case broadcast.MonthOf(start, loc) != a.Month:
		s.error(w, r, broadcast.FieldError(broadcast.EConflict, "start", "an airing stays in its month (%s); %s is in %s", a.Month, start.In(loc).Format(time.RFC3339), broadcast.MonthOf(start, loc)))
		return
	case !broadcast.InHours(start, a.Audio.Duration(), loc, p):
		s.error(w, r, broadcast.FieldError(broadcast.EConflict, "start", "the airing (%s long) would not fit inside broadcasting hours %s", a.Audio.Duration().Round(time.Second), p.Hours))
		return
	}
	// Neighbours within a day either side are the only ones that can overlap:
	// no programme is longer than a day.
	others, err := s.opts.Store.StationAirings(st.ID, start.Add(-24*time.Hour), start.Add(24*time.Hour))
	if err != nil {
		s.error(w, r, err)
		return
	}
	moved := *a
	moved.Start = start
	for _, o := range others {
		if o.ID != a.ID && o.Status != broadcast.StatusCancelled && o.Overlaps(&moved) {
			s.error(w, r, broadcast.FieldError(broadcast.EConflict, "start", "it would overlap airing %s (%s, %s–%s)", o.ID, o.Title, o.Start.In(loc).Format("2006-01-02 15:04"), o.End().In(loc).Format("15:04")))
			return
		}
	}
	detail, _ := json.Marshal(map[string]string{"from": a.Start.Format(time.RFC3339), "to": start.Format(time.RFC3339)})
	op := &broadcast.OpEntry{At: now, Actor: actor(tok), Action: "airing.move", Subject: a.ID, Detail: detail, Unit: st.Path}
	a, err = s.opts.Store.UpdateAiring(r.Context(), a.ID, func(a *broadcast.Airing) error {
		if err := editable(a, now, p); err != nil {
			return err
		}
		a.Start, a.NotAfter, a.UpdatedAt = start, start.Add(p.StartTolerance), now
		return nil
	}, op)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.opts.Planner.Touch(a.Station)
	writeJSON(w, http.StatusOK, a)
}

// editable refuses edits of airings that are over or about to start.
func editable(a *broadcast.Airing, now time.Time, p broadcast.Policy) error {
	if a.Status.Final() {
		return broadcast.Errorf(broadcast.EConflict, "airing %s is %s; it can no longer be changed", a.ID, a.Status)
	}
	if a.Status == broadcast.StatusStarted || a.Start.Sub(now) < p.Freeze {
		return broadcast.Errorf(broadcast.EConflict, "airing %s starts at %s, inside the freeze window of %s: devices may already be preparing it; cancel it instead", a.ID, a.Start.Format(time.RFC3339), p.Freeze)
	}
	return nil
}

func (s *Server) cancelAiring(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	a, st, ok := s.airing(w, r, tok)
	if !ok {
		return
	}
	now := s.opts.Now()
	op := &broadcast.OpEntry{At: now, Actor: actor(tok), Action: "airing.cancel", Subject: a.ID, Unit: st.Path}
	a, err := s.opts.Store.UpdateAiring(r.Context(), a.ID, func(a *broadcast.Airing) error {
		// An explicit cancel is allowed inside the freeze window: that is
		// what the window's "unless an operator cancels it" means.
		if a.Status.Final() {
			return broadcast.Errorf(broadcast.EConflict, "airing %s is %s; it can no longer be cancelled", a.ID, a.Status)
		}
		a.Cancel(now, "cancelled by "+tok.Name)
		return nil
	}, op)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.opts.Planner.Touch(a.Station)
	writeJSON(w, http.StatusOK, a)
}
