package api

import (
	"net/http"
	"slices"

	"github.com/loaxa/loaxa/broadcast"
	dto "github.com/prometheus/client_model/go"
)

// ServeDeviceStates adds GET /api/v1/devices/status to s: what the daemon
// knows live of its devices (online, last seen, clock, volume, outbox, seq
// gaps), which the store does not hold, since statuses are soft state kept
// in the MQTT hub's memory. states lists them; station names a state's
// station, for scoping.
//
// It is a function rather than an Options field so that package api names
// no type of package devices (only devices knows MQTT): the daemon passes
// the hub's own method, and the states are written as their type marshals.
//
//	GET /api/v1/devices/status?station=S | ?unit=U
//	  all roles: {"devices": [...], "rejected_events": {"bad_signature": n, ...}}
//
// Devices never heard since the daemon started are absent: GET
// /api/v1/stations/{id} lists every registered device. rejected_events
// counts the events refused since the start, by reason (bad_signature: a
// forged or corrupted event); the counters are not per device or unit, so
// only tokens of the whole tree get them.
func ServeDeviceStates[S any](s *Server, states func() []S, station func(S) string) {
	s.handle("GET /api/v1/devices/status", s.auth(func(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
		want := r.URL.Query().Get("station")
		_, path, err := s.unitParam(r, tok)
		if err == nil && want != "" {
			var st broadcast.Station
			if st, err = s.opts.Store.Station(want); err == nil {
				err = scope(tok, st.Path, "station "+st.ID)
			}
		}
		if err != nil {
			s.error(w, r, err)
			return
		}
		paths := map[string]string{} // station → path, one lookup per station
		out := []S{}
		for _, st := range states() {
			id := station(st)
			if want != "" && id != want {
				continue
			}
			p, ok := paths[id]
			if !ok {
				if st, err := s.opts.Store.Station(id); err == nil {
					p = st.Path
				} else {
					p = "\x00" // unknown station: only unscoped tokens see it
				}
				paths[id] = p
			}
			// path is "" only for a token of the whole tree asking for it all.
			if path == "" || broadcast.Below(p, path) {
				out = append(out, st)
			}
		}
		body := map[string]any{"devices": out}
		if tok.UnitPath == "" {
			body["rejected_events"] = s.rejectedEvents()
		}
		writeJSON(w, http.StatusOK, body)
	}, anyRole...))
}

// rejectedEvents reads the hub's rejection counters from the registry.
func (s *Server) rejectedEvents() map[string]float64 {
	out := map[string]float64{}
	mfs, err := s.opts.Gatherer.Gather()
	if err != nil {
		s.log.Warn("gather metrics for device status", "err", err)
	}
	i := slices.IndexFunc(mfs, func(mf *dto.MetricFamily) bool { return mf.GetName() == "loaxa_devices_events_rejected_total" })
	if i < 0 {
		return out
	}
	for _, m := range mfs[i].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "reason" {
				out[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}
