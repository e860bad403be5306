package web

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// statusOrder ranks compliance statuses worst first.
var statusOrder = map[string]int{"non_compliant": 0, "at_risk": 1, "in_progress": 2, "compliant": 3}

type statusCount struct {
	Status string
	N      int
}

type problem struct {
	At      time.Time
	Kind    string // message key suffix: missed, seq_gap, unsynced, forged
	Subject string
	Link    string
	N       int
}

type overviewData struct {
	Month    string
	Counts   []statusCount
	Rows     []complianceRow
	More     int
	Offline  []deviceState
	Next     []airing
	Problems []problem
	Names    map[string]string // station id → name
	Updated  time.Time
}

const overviewRows = 15

// livePage serves a page and its "live" part, which app.js polls, from one
// reading of the data, so that the refreshed part shows what the page did.
func (s *Server) livePage(title, tmpl string, data func(*http.Request, *session) (any, error)) (page, part func(http.ResponseWriter, *http.Request, *session)) {
	serve := func(whole bool) func(http.ResponseWriter, *http.Request, *session) {
		return func(w http.ResponseWriter, r *http.Request, ss *session) {
			v := s.view(r, ss, title)
			d, err := data(r, ss)
			if err != nil {
				s.fail(w, r, ss, err)
				return
			}
			v.Data = d
			if whole {
				s.render(w, http.StatusOK, tmpl, v)
			} else {
				s.renderPart(w, tmpl, "live", v)
			}
		}
	}
	return serve(true), serve(false)
}

func (s *Server) overviewData(r *http.Request, ss *session) (*overviewData, error) {
	now := s.opts.Now().In(s.loc)
	d := &overviewData{Month: now.Format("2006-01"), Names: map[string]string{}, Updated: now}
	q := url.Values{"period": {d.Month}}
	if ss.me.Unit != "" {
		q.Set("unit", ss.me.Unit)
	}
	var c compliance
	if err := s.get(r, ss, "/api/v1/compliance?"+q.Encode(), &c); err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for _, row := range c.Rows {
		counts[row.Status]++
		d.Names[row.Station] = row.Name
	}
	for _, st := range []string{"non_compliant", "at_risk", "in_progress", "compliant"} {
		d.Counts = append(d.Counts, statusCount{st, counts[st]})
	}
	rows := slices.Clone(c.Rows)
	slices.SortStableFunc(rows, func(a, b complianceRow) int {
		return cmp.Or(cmp.Compare(statusOrder[a.Status], statusOrder[b.Status]), cmp.Compare(a.Aired-a.Required, b.Aired-b.Required), cmp.Compare(a.Name, b.Name))
	})
	if len(rows) > overviewRows {
		d.More = len(rows) - overviewRows
		rows = rows[:overviewRows]
	}
	d.Rows = rows

	var ds deviceStates
	if err := s.get(r, ss, "/api/v1/devices/status", &ds); err != nil {
		return nil, err
	}
	for _, dev := range ds.Devices {
		if !dev.Online {
			d.Offline = append(d.Offline, dev)
		}
		if dev.SeqGap() {
			d.Problems = append(d.Problems, problem{At: dev.LastSeen, Kind: "seq_gap", Subject: dev.Device, Link: "/stations/" + dev.Station})
		}
		if dev.Unsynced() {
			d.Problems = append(d.Problems, problem{At: dev.LastSeen, Kind: "unsynced", Subject: dev.Device, Link: "/stations/" + dev.Station})
		}
	}
	if n := int(ds.RejectedEvents["bad_signature"]); n > 0 {
		d.Problems = append(d.Problems, problem{At: now, Kind: "forged", N: n})
	}

	var as struct{ Airings []airing }
	if err := s.get(r, ss, "/api/v1/airings?"+url.Values{"month": {d.Month}}.Encode(), &as); err != nil {
		return nil, err
	}
	for _, a := range as.Airings {
		switch {
		case a.Status == "missed":
			d.Problems = append(d.Problems, problem{At: a.Start, Kind: "missed", Subject: a.Title + " — " + cmp.Or(d.Names[a.Station], a.Station), Link: "/airings/" + a.ID})
		case !a.Final() && a.Start.After(now) && len(d.Next) < 10:
			d.Next = append(d.Next, a)
		}
	}
	slices.SortFunc(d.Problems, func(a, b problem) int { return b.At.Compare(a.At) })
	if len(d.Problems) > 20 {
		d.Problems = d.Problems[:20]
	}
	return d, nil
}
