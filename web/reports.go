package web

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// validPeriod checks a report period as the API takes it: a month
// (2026-12), a half-year (2026-H2) or a year (2026), so that a typo is
// answered next to the field before any request.
func validPeriod(p string) bool {
	if len(p) < 4 {
		return false
	}
	y, err := strconv.Atoi(p[:4])
	if err != nil || y < broadcast.MinYear || y > broadcast.MaxYear || p[0] == '+' || p[0] == '-' {
		return false
	}
	switch rest := p[4:]; {
	case rest == "":
		return true
	case rest == "-H1" || rest == "-H2":
		return true
	case len(rest) == 3 && rest[0] == '-':
		m, err := strconv.Atoi(rest[1:])
		return err == nil && rest[1] >= '0' && rest[1] <= '9' && m >= 1 && m <= 12
	}
	return false
}

type reportsData struct {
	Period, Unit string
	Units        []unit
	C            compliance
	Formats      []string
	Whole        bool // a token of the whole tree: it may verify the logs
}

func (s *Server) reports(w http.ResponseWriter, r *http.Request, ss *session) {
	v := s.view(r, ss, "reports.title")
	q := r.URL.Query()
	d := &reportsData{Period: cmp.Or(q.Get("period"), s.opts.Now().In(s.loc).Format("2006-01")), Unit: q.Get("unit"),
		Formats: []string{"xlsx", "pdf", "csv", "html"}, Whole: ss.me.Unit == ""}
	units, err := s.unitChoices(r, ss)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	d.Units = units
	status := http.StatusOK
	if !validPeriod(d.Period) {
		v.Fields["period"] = v.T("reports.badperiod")
		status = http.StatusUnprocessableEntity
	} else {
		cq := url.Values{"period": {d.Period}, "lang": {v.Lang}}
		if d.Unit != "" {
			cq.Set("unit", d.Unit)
		}
		if err := s.get(r, ss, "/api/v1/compliance?"+cq.Encode(), &d.C); err != nil {
			ae, ok := err.(*apiError)
			if !ok || ae.Status == http.StatusUnauthorized {
				s.fail(w, r, ss, err)
				return
			}
			v.fieldError(ae)
			status = ae.Status
		}
	}
	slices.SortStableFunc(d.C.Rows, func(a, b complianceRow) int {
		return cmp.Or(cmp.Compare(statusOrder[a.Status], statusOrder[b.Status]), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Month, b.Month))
	})
	v.Data = d
	s.render(w, status, "reports", v)
}

type reportStationData struct {
	Station stationDetail
	Month   string
	Row     *complianceRow
	Airings []airing
}

// reportStation is the drill-down behind one station-month's figures: the
// compliance row, its airings and the as-run entries each rests on.
func (s *Server) reportStation(w http.ResponseWriter, r *http.Request, ss *session) {
	v := s.view(r, ss, "reports.station.title")
	q := r.URL.Query()
	d := &reportStationData{Month: q.Get("month")}
	if _, ok := parseMonth(d.Month); !ok {
		d.Month = s.opts.Now().In(s.loc).Format("2006-01")
	}
	id := q.Get("station")
	if err := s.get(r, ss, "/api/v1/stations/"+url.PathEscape(id), &d.Station); err != nil {
		s.fail(w, r, ss, err)
		return
	}
	var c compliance
	if err := s.get(r, ss, "/api/v1/compliance?"+url.Values{"period": {d.Month}, "unit": {d.Station.Unit}, "lang": {v.Lang}}.Encode(), &c); err != nil {
		s.fail(w, r, ss, err)
		return
	}
	for i := range c.Rows {
		if c.Rows[i].Station == id {
			d.Row = &c.Rows[i]
		}
	}
	var as struct{ Airings []airing }
	if err := s.get(r, ss, "/api/v1/airings?"+url.Values{"station": {id}, "month": {d.Month}}.Encode(), &as); err != nil {
		s.fail(w, r, ss, err)
		return
	}
	d.Airings = as.Airings
	v.Data = d
	s.render(w, http.StatusOK, "report_station", v)
}

// reportDownload passes a report document through with the session's
// token: XLSX, PDF, CSV or HTML as the API renders it.
func (s *Server) reportDownload(w http.ResponseWriter, r *http.Request, ss *session) {
	q := r.URL.Query()
	aq := url.Values{"period": {q.Get("period")}, "format": {q.Get("format")}, "lang": {langOf(r)}}
	if u := q.Get("unit"); u != "" {
		aq.Set("unit", u)
	}
	s.stream(w, r, ss, "/api/v1/compliance?"+aq.Encode())
}

func (s *Server) reportBundle(w http.ResponseWriter, r *http.Request, ss *session) {
	s.stream(w, r, ss, "/api/v1/audit/bundle?"+url.Values{"period": {r.URL.Query().Get("period")}}.Encode())
}

func (s *Server) reportVerify(w http.ResponseWriter, r *http.Request, ss *session) {
	v := s.view(r, ss, "verify.title")
	var res verifyResult
	if err := s.get(r, ss, "/api/v1/audit/verify", &res); err != nil {
		s.fail(w, r, ss, err)
		return
	}
	v.Data = res
	s.render(w, http.StatusOK, "verify", v)
}

type oplogData struct {
	From, To string
	Entries  []opEntry
}

func (s *Server) reportOplog(w http.ResponseWriter, r *http.Request, ss *session) {
	v := s.view(r, ss, "oplog.title")
	q := r.URL.Query()
	now := s.opts.Now().In(s.loc)
	d := &oplogData{From: q.Get("from"), To: q.Get("to")}
	if d.From == "" {
		d.From = now.AddDate(0, 0, -30).Format("2006-01-02")
	}
	aq := url.Values{}
	status := http.StatusOK
	for _, f := range []struct{ name, val string }{{"from", d.From}, {"to", d.To}} {
		if f.val == "" {
			continue
		}
		t, err := time.ParseInLocation("2006-01-02", f.val, s.loc)
		if err != nil {
			v.Fields[f.name] = v.T("oplog.baddate")
			status = http.StatusUnprocessableEntity
			continue
		}
		if f.name == "to" {
			t = t.AddDate(0, 0, 1) // the whole of the last day
		}
		aq.Set(f.name, t.Format(time.RFC3339))
	}
	if status == http.StatusOK {
		var out struct{ Entries []opEntry }
		if err := s.get(r, ss, "/api/v1/oplog?"+aq.Encode(), &out); err != nil {
			s.fail(w, r, ss, err)
			return
		}
		d.Entries = out.Entries
		slices.Reverse(d.Entries) // newest first
		if len(d.Entries) > 1000 {
			d.Entries = d.Entries[:1000]
		}
	}
	v.Data = d
	s.render(w, status, "oplog", v)
}
