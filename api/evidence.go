package api

import (
	"crypto/ed25519"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/loaxa/loaxa/audit"
	"github.com/loaxa/loaxa/broadcast"
)

var errStop = errors.New("stop")

// asrunQuery is the filter of GET /api/v1/asrun.
type asrunQuery struct {
	station, device string
	from, to        time.Time
	after           uint64
	limit           int
}

func parseAsrunQuery(r *http.Request) (asrunQuery, error) {
	q := r.URL.Query()
	aq := asrunQuery{station: q.Get("station"), device: q.Get("device"), limit: 10000}
	for _, f := range []struct {
		name string
		into *time.Time
	}{{"from", &aq.from}, {"to", &aq.to}} {
		if v := q.Get(f.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return aq, broadcast.FieldError(broadcast.EInvalid, f.name, "%s must be RFC 3339, e.g. 2026-12-01T00:00:00+07:00", f.name)
			}
			*f.into = t
		}
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return aq, broadcast.FieldError(broadcast.EInvalid, "after", "after must be an entry number")
		}
		aq.after = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1_000_000 {
			return aq, broadcast.FieldError(broadcast.EInvalid, "limit", "limit must be 1-1000000")
		}
		aq.limit = n
	}
	return aq, nil
}

// asrun streams entries in log order; a client pages with after= the last
// seq it got. The payload is base64 of the exact bytes the device sent, so
// that anyone can check the signature.
func (s *Server) asrun(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	aq, err := parseAsrunQuery(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	format := r.URL.Query().Get("format")
	if format != "" && format != "json" && format != "csv" {
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "format", "format must be json or csv"))
		return
	}
	paths := map[string]string{} // station → path, so that scoping costs one lookup per station
	visible := func(station string) bool {
		p, ok := paths[station]
		if !ok {
			if st, err := s.opts.Store.Station(station); err == nil {
				p = st.Path
			} else {
				p = "\x00" // unknown station: visible to unscoped tokens only
			}
			paths[station] = p
		}
		return tok.UnitPath == "" || tok.Covers(p)
	}
	match := func(e broadcast.AsRunEntry) bool {
		return (aq.station == "" || e.Station == aq.station) && (aq.device == "" || e.Device == aq.device) &&
			(aq.from.IsZero() || !e.ReceivedAt.Before(aq.from)) && (aq.to.IsZero() || e.ReceivedAt.Before(aq.to)) && visible(e.Station)
	}
	n := 0
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"seq", "received_at", "device", "station", "airing", "device_seq", "event", "payload", "prev_hash", "hash"})
		err = s.opts.Store.AsRun(aq.after, func(e broadcast.AsRunEntry) error {
			if !match(e) {
				return nil
			}
			_ = cw.Write([]string{strconv.FormatUint(e.Seq, 10), e.ReceivedAt.Format(time.RFC3339Nano), e.Device, e.Station, e.Airing, strconv.FormatUint(e.DeviceSeq, 10), string(e.Event), string(e.Payload), e.PrevHash.String(), e.Hash.String()})
			if n++; n >= aq.limit {
				return errStop
			}
			return nil
		})
		cw.Flush()
	} else {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		fmt.Fprint(w, `{"entries":[`)
		err = s.opts.Store.AsRun(aq.after, func(e broadcast.AsRunEntry) error {
			if !match(e) {
				return nil
			}
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			if n > 0 {
				w.Write([]byte{','})
			}
			w.Write(b)
			if n++; n >= aq.limit {
				return errStop
			}
			return nil
		})
		fmt.Fprint(w, "]}\n")
	}
	if err != nil && !errors.Is(err, errStop) {
		// The status line is gone; a truncated document is the only signal
		// left, and the log says why.
		s.log.Error("stream as-run log", "err", err)
	}
}

func (s *Server) stationMonth(st broadcast.Station, m broadcast.Month) (audit.StationMonth, error) {
	loc := s.location(st)
	airings, err := s.opts.Store.StationMonthAirings(st.ID, m)
	if err != nil {
		return audit.StationMonth{}, err
	}
	devs, err := s.opts.Store.Devices(st.ID)
	if err != nil {
		return audit.StationMonth{}, err
	}
	enabled := 0
	for _, d := range devs {
		if !d.Disabled {
			enabled++
		}
	}
	_, end := m.Bounds(loc)
	return audit.Judge(st, m, end, airings, enabled, s.opts.Now(), s.opts.Policy), nil
}

type complianceReport struct {
	Period string               `json:"period"`
	Unit   string               `json:"unit"`
	Totals map[string]int       `json:"totals"`
	Rows   []audit.StationMonth `json:"rows"`
}

func (s *Server) compliance(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	q := r.URL.Query()
	period, err := broadcast.ParsePeriod(q.Get("period"))
	if err != nil {
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "period", "%v", err))
		return
	}
	if f := q.Get("format"); f != "" && f != "json" {
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "format", "format %q is not available yet; use json", f))
		return
	}
	unit, path := tok.Unit, tok.UnitPath
	if code := q.Get("unit"); code != "" {
		u, err := s.opts.Store.Unit(code)
		if err == nil {
			err = scope(tok, u.Path, "unit "+code)
		}
		if err != nil {
			s.error(w, r, err)
			return
		}
		unit, path = u.Code, u.Path
	}
	stations, err := s.opts.Store.Stations(path)
	if err != nil {
		s.error(w, r, err)
		return
	}
	rep := complianceReport{Period: period.Name, Unit: unit, Totals: map[string]int{"stations": len(stations)}, Rows: []audit.StationMonth{}}
	for _, m := range period.Months {
		for _, st := range stations {
			row, err := s.stationMonth(st, m)
			if err != nil {
				s.error(w, r, err)
				return
			}
			rep.Totals[row.Status]++
			rep.Totals["required"] += row.Required
			rep.Totals["aired"] += row.Aired
			rep.Rows = append(rep.Rows, row)
		}
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) verify(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	keys := map[string]ed25519.PublicKey{}
	v := &audit.Verifier{Key: func(device string) (ed25519.PublicKey, bool) {
		if k, ok := keys[device]; ok {
			return k, true
		}
		d, err := s.opts.Store.Device(device)
		if err != nil {
			return nil, false
		}
		keys[device] = d.PublicKey
		return d.PublicKey, true
	}}
	// Heads first: entries appended while we read are beyond them and not
	// judged.
	seq, head, err := s.opts.Store.AsRunHead()
	if err != nil {
		s.error(w, r, err)
		return
	}
	opSeq, opHead, err := s.opts.Store.OpsHead()
	if err != nil {
		s.error(w, r, err)
		return
	}
	err = s.opts.Store.AsRun(0, func(e broadcast.AsRunEntry) error {
		if e.Seq > seq {
			return errStop
		}
		v.AsRun(e)
		return nil
	})
	if err == nil || errors.Is(err, errStop) {
		err = s.opts.Store.Ops(0, func(o broadcast.OpEntry) error {
			if o.Seq > opSeq {
				return errStop
			}
			v.Op(o)
			return nil
		})
	}
	if err != nil && !errors.Is(err, errStop) {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v.Result(head, seq, opHead, opSeq))
}

func (s *Server) oplog(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	q := r.URL.Query()
	var from, to time.Time
	for _, f := range []struct {
		name string
		into *time.Time
	}{{"from", &from}, {"to", &to}} {
		if v := q.Get(f.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				s.error(w, r, broadcast.FieldError(broadcast.EInvalid, f.name, "%s must be RFC 3339", f.name))
				return
			}
			*f.into = t
		}
	}
	out := []broadcast.OpEntry{}
	err := s.opts.Store.Ops(0, func(o broadcast.OpEntry) error {
		if (from.IsZero() || !o.At.Before(from)) && (to.IsZero() || o.At.Before(to)) {
			out = append(out, o)
		}
		return nil
	})
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": out})
}

func (s *Server) backup(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="loaxa-backup-%s.tar"`, s.opts.Now().UTC().Format("20060102T150405Z")))
	if err := s.opts.Store.Backup(r.Context(), w); err != nil {
		s.log.Error("backup", "err", err)
	}
}

// audio serves a blob to a device (HTTP Basic) or to anyone with a token.
// http.ServeContent gives Range (resume after a broken download) and,
// with the ETag set, If-None-Match.
func (s *Server) audio(w http.ResponseWriter, r *http.Request) {
	if _, _, basic := r.BasicAuth(); basic {
		if !s.deviceAuth(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="loaxa audio"`)
			s.error(w, r, broadcast.Errorf(broadcast.EUnauthorized, "device id or secret is wrong, or the device is disabled"))
			return
		}
	} else if _, err := s.token(r); err != nil {
		w.Header().Set("WWW-Authenticate", `Basic realm="loaxa audio"`)
		s.error(w, r, err)
		return
	}
	sha := r.PathValue("sha256")
	f, err := s.opts.Store.OpenBlob(sha)
	if err != nil {
		s.error(w, r, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		s.error(w, r, err)
		return
	}
	w.Header().Set("ETag", `"`+sha+`"`)
	w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
	http.ServeContent(w, r, "", fi.ModTime(), f)
}
