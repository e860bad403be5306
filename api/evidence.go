package api

import (
	"bytes"
	"cmp"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/loaxa/loaxa/audit"
	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/broadcast/audio"
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
	// A station= or device= outside a scoped token's unit was filtered out
	// silently (200, no entries, as if nothing had aired); docs/api.md answers
	// 403 for "not allowed for this unit", as GET /api/v1/airings?station=
	// does. Found by TestAuthorisationMatrix.
	if err := s.asrunScope(tok, aq); err != nil {
		s.error(w, r, err)
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
		_ = cw.Write([]string{"seq", "received_at", "device", "station", "airing", "device_seq", "event", "payload", "prev_hash", "hash", "unmatched"})
		err = s.opts.Store.AsRun(aq.after, func(e broadcast.AsRunEntry) error {
			if !match(e) {
				return nil
			}
			_ = cw.Write([]string{strconv.FormatUint(e.Seq, 10), e.ReceivedAt.Format(time.RFC3339Nano), audit.SafeCell(e.Device), audit.SafeCell(e.Station), audit.SafeCell(e.Airing), strconv.FormatUint(e.DeviceSeq, 10), string(e.Event), audit.SafeCell(string(e.Payload)), e.PrevHash.String(), e.Hash.String(), audit.SafeCell(e.Unmatched)})
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

// asrunScope refuses an as-run query for a station or device outside the
// token's unit. Unknown ones keep their old answer, an empty list: the log
// may name stations the unit tree no longer has.
func (s *Server) asrunScope(tok broadcast.Token, aq asrunQuery) error {
	if tok.UnitPath == "" {
		return nil
	}
	check := func(station, what string) error {
		st, err := s.opts.Store.Station(station)
		if broadcast.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return scope(tok, st.Path, what)
	}
	if aq.station != "" {
		if err := check(aq.station, "station "+aq.station); err != nil {
			return err
		}
	}
	if aq.device != "" {
		d, err := s.opts.Store.Device(aq.device)
		if broadcast.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return check(d.Station, "device "+d.ID)
	}
	return nil
}

func (s *Server) stationMonth(st broadcast.Station, m broadcast.Month) (audit.StationMonth, error) {
	var row audit.StationMonth
	err := s.opts.Store.StationMonths([]string{st.ID}, []broadcast.Month{m}, func(_ string, _ broadcast.Month, sums []broadcast.AiringSummary, enabled int) error {
		row = s.judge(st, m, sums, enabled)
		return nil
	})
	return row, err
}

func (s *Server) judge(st broadcast.Station, m broadcast.Month, sums []broadcast.AiringSummary, enabled int) audit.StationMonth {
	_, end := m.Bounds(s.location(st))
	return audit.Judge(st, m, end, sums, enabled, s.opts.Now(), s.opts.Policy)
}

// compliance answers GET /api/v1/compliance: the rows of audit.Judge for
// every station of the unit and month of the period, named from the unit
// tree and rendered by audit.RenderReport as the format asks.
func (s *Server) compliance(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	q := r.URL.Query()
	period, err := broadcast.ParsePeriod(q.Get("period"))
	if err != nil {
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "period", "%v", err))
		return
	}
	format, lang := cmp.Or(q.Get("format"), audit.FormatJSON), cmp.Or(q.Get("lang"), audit.LangVI)
	if !audit.IsReportFormat(format) {
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "format", "format %q: want json, csv, xlsx, pdf or html", format))
		return
	}
	if !audit.IsReportLang(lang) {
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "lang", "lang %q: want vi (Vietnamese) or en (English)", lang))
		return
	}
	// unitOf names a unit from the tree, each once: a province's report
	// asks for the same district for every one of its communes. A unit
	// the tree no longer has is shown by its code.
	names := map[string]audit.UnitRef{}
	unitOf := func(code string) (audit.UnitRef, error) {
		if ref, ok := names[code]; ok || code == "" {
			return ref, nil
		}
		u, err := s.opts.Store.Unit(code)
		if err != nil && !broadcast.IsNotFound(err) {
			return audit.UnitRef{}, fmt.Errorf("compliance report: name unit %s: %w", code, err)
		}
		ref := audit.UnitRef{Code: code, Name: u.Name}
		names[code] = ref
		return ref, nil
	}
	unit, path, err := s.unitParam(r, tok)
	if err != nil {
		s.error(w, r, err)
		return
	}
	stations, err := s.opts.Store.Stations(path)
	if err != nil {
		s.error(w, r, err)
		return
	}
	spec := audit.ReportSpec{Period: period, GeneratedAt: s.opts.Now().In(s.opts.Location),
		Parents: make(map[string]audit.UnitRef, len(stations))}
	if spec.Unit, err = unitOf(unit); err != nil {
		s.error(w, r, err)
		return
	}
	// A station's table is its parent's, the next to last code of its path
	// (a district, or the province since communes hang from provinces);
	// the document is issued under the province at the root, when there
	// is one for every station.
	roots := map[string]bool{}
	if path != "" {
		roots[strings.SplitN(path, "/", 2)[0]] = true
	}
	for _, st := range stations {
		codes := strings.Split(st.Path, "/")
		roots[codes[0]] = true
		if len(codes) >= 2 {
			if spec.Parents[st.Unit], err = unitOf(codes[len(codes)-2]); err != nil {
				s.error(w, r, err)
				return
			}
		}
	}
	if len(roots) == 1 {
		for root := range roots {
			if spec.Issuer, err = unitOf(root); err != nil {
				s.error(w, r, err)
				return
			}
		}
	}
	// Storage keeps each airing's summary up to date as events are logged:
	// a national year is 120,564 station-months read in one transaction,
	// and neither the as-run log nor an airing record is opened.
	ids := make([]string, len(stations))
	byID := make(map[string]broadcast.Station, len(stations))
	for i, st := range stations {
		ids[i], byID[st.ID] = st.ID, st
	}
	rows := make([]audit.StationMonth, 0, len(stations)*len(period.Months))
	err = s.opts.Store.StationMonths(ids, period.Months, func(id string, m broadcast.Month, sums []broadcast.AiringSummary, enabled int) error {
		rows = append(rows, s.judge(byID[id], m, sums, enabled))
		return nil
	})
	if err != nil {
		s.error(w, r, err)
		return
	}
	seals, err := s.sealedMonths(period)
	if err != nil {
		s.error(w, r, err)
		return
	}
	// A sealed month's figures are the sealed ones; what came after the
	// seal is the report's addendum.
	late := audit.ApplySeals(rows, seals)
	rep := audit.NewReport(spec, rows)
	rep.Addendum = late
	disposition := "attachment" // the documents are files to save and file
	if format == audit.FormatJSON || format == audit.FormatHTML {
		disposition = "inline"
	}
	w.Header().Set("Content-Type", audit.ReportContentType(format))
	w.Header().Set("Content-Disposition", fmt.Sprintf(`%s; filename="%s"`, disposition, audit.ReportFileName(rep, format, lang)))
	if format == audit.FormatJSON || format == audit.FormatCSV {
		// Streamed: everything that can fail has been read, and what is
		// left is text written row by row (a national year's JSON is
		// ~100 MiB, which a buffer would hold twice).
		w.WriteHeader(http.StatusOK)
		if err := audit.RenderReport(w, rep, format, lang); err != nil {
			s.log.Debug("send compliance report", "err", err) // the client left
		}
		return
	}
	// The documents are rendered in full before the status line, so that a
	// failure is still an error answer rather than a truncated file.
	var body bytes.Buffer
	if err := audit.RenderReport(&body, rep, format, lang); err != nil {
		w.Header().Del("Content-Disposition")
		s.error(w, r, err)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(body.Len()))
	w.WriteHeader(http.StatusOK)
	if _, err := body.WriteTo(w); err != nil {
		s.log.Debug("send compliance report", "err", err) // the client left
	}
}

// verify checks both logs from their genesis to their current heads: the
// chain, and every device signature on all cores (audit.VerifyLogs), with
// memory that does not grow with the log; then the records reports are
// computed from against the hashes the operations log holds, and every
// airing's verdicts against its evidence (audit.VerifyRecords).
func (s *Server) verify(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	// A check of every entry and signature is the heaviest request there
	// is; a district's auditor has GET /api/v1/asrun for its own entries.
	if err := wholeTree(tok, "verifying the logs"); err != nil {
		s.error(w, r, err)
		return
	}
	res, err := audit.VerifyStore(r.Context(), s.opts.Store, s.opts.Policy, 0)
	if err != nil {
		if r.Context().Err() != nil {
			return // the client left; nobody reads the answer
		}
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// oplog answers GET /api/v1/oplog: who did what, within the token's units.
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
		// A scoped token reads the changes of its units only: what belongs
		// to the whole tree, or to no known unit, is the whole tree's.
		if tok.UnitPath != "" && (o.Unit == "" || !tok.Covers(o.Unit)) {
			return nil
		}
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
	if err := wholeTreeOnly(tok, "a backup", "it is the whole database, every unit's records and tokens"); err != nil {
		s.error(w, r, err)
		return
	}
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
	sha := r.PathValue("sha256")
	if _, _, basic := r.BasicAuth(); basic {
		d, err := s.deviceAuth(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="loaxa audio"`)
			s.error(w, r, err)
			return
		}
		if err := s.deviceMayFetch(d, sha); err != nil {
			s.error(w, r, err)
			return
		}
	} else if _, err := s.token(r); err != nil {
		w.Header().Set("WWW-Authenticate", `Basic realm="loaxa audio"`)
		s.error(w, r, err)
		return
	}
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
	// The type is the stored audio's, never sniffed: a file that passed
	// the probe may still hold markup a browser would run (an HTML page
	// before the first MP3 frame), so it is also marked not to be sniffed
	// and, opened as a page, sandboxed away from the console's origin.
	head := make([]byte, 16)
	n, _ := f.ReadAt(head, 0)
	ext, ctype := audio.Kind(head[:n])
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": sha + "." + ext}))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	h.Set("ETag", `"`+sha+`"`)
	h.Set("Cache-Control", "private, max-age=31536000, immutable")
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// deviceMayFetch lets a device download only the audio of an airing of its
// own station, in a window around its schedule's (what it was sent, and
// what it may still be playing or catching up on), so that a device, or
// someone holding its secret, cannot pull any unit's audio by hash.
func (s *Server) deviceMayFetch(d broadcast.Device, sha string) error {
	now := s.opts.Now()
	lead := s.opts.Policy.Lead
	if lead <= 0 {
		lead = 7 * 24 * time.Hour
	}
	airings, err := s.opts.Store.StationAirings(d.Station, now.Add(-48*time.Hour), now.Add(lead+48*time.Hour))
	if err != nil {
		return err
	}
	for _, a := range airings {
		if a.Audio.SHA256 == sha {
			return nil
		}
	}
	s.deviceFetches.Inc()
	s.log.Warn("device asked for audio outside its schedule", "device", d.ID, "station", d.Station, "sha256", sha)
	// Not found rather than forbidden: the answer says nothing of whether
	// the audio exists.
	return broadcast.Errorf(broadcast.ENotFound, "no airing of station %s plays audio %s", d.Station, sha)
}
