package web

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// parseLocalTime reads a datetime-local input ("2026-12-05T06:30", seconds
// optional) as a time in loc: browsers send no zone, and the API wants
// RFC 3339 with the stations' offset (+07:00).
func parseLocalTime(s string, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date and time like 2026-12-05T06:30", s)
}

// parseMonth checks a YYYY-MM value from a month input or a query.
func parseMonth(s string) (time.Time, bool) {
	t, err := time.Parse("2006-01", s)
	return t, err == nil && len(s) == 7
}

type calDay struct {
	Date    time.Time
	InMonth bool
	Today   bool
	Airings []airing
	More    int
}

type scheduleData struct {
	Month, Unit, Station string
	StationName          string
	Prev, Next           string
	Units                []unit
	Stations             []station
	Weeks                [][]calDay
	Names                map[string]string
	Total                int
}

// dayLimit bounds the airings listed in a day cell of a unit's calendar: a
// province has hundreds a day; the station calendars show them all.
const dayLimit = 6

func (s *Server) schedule(w http.ResponseWriter, r *http.Request, ss *session) {
	v := s.view(r, ss, "schedule.title")
	q := r.URL.Query()
	now := s.opts.Now().In(s.loc)
	d := &scheduleData{Month: q.Get("month"), Unit: q.Get("unit"), Station: q.Get("station"), Names: map[string]string{}}
	first, ok := parseMonth(d.Month)
	if !ok {
		first = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
		d.Month = first.Format("2006-01")
	}
	d.Prev, d.Next = first.AddDate(0, -1, 0).Format("2006-01"), first.AddDate(0, 1, 0).Format("2006-01")
	units, err := s.unitChoices(r, ss)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	d.Units = units
	unitCode := cmp.Or(d.Unit, ss.me.Unit)
	var sts struct{ Stations []station }
	if err := s.get(r, ss, "/api/v1/stations?"+url.Values{"unit": {unitCode}}.Encode(), &sts); err != nil {
		s.fail(w, r, ss, err)
		return
	}
	d.Stations = sts.Stations
	inUnit := map[string]bool{}
	for _, st := range sts.Stations {
		d.Names[st.ID] = st.Name
		inUnit[st.ID] = true
	}
	aq := url.Values{"month": {d.Month}}
	if d.Station != "" {
		aq.Set("station", d.Station)
		if name, ok := d.Names[d.Station]; ok {
			d.StationName = name
		} else {
			var st stationDetail
			if err := s.get(r, ss, "/api/v1/stations/"+url.PathEscape(d.Station), &st); err != nil {
				s.fail(w, r, ss, err)
				return
			}
			d.StationName, d.Names[st.ID] = st.Name, st.Name
		}
	}
	var as struct{ Airings []airing }
	if err := s.get(r, ss, "/api/v1/airings?"+aq.Encode(), &as); err != nil {
		s.fail(w, r, ss, err)
		return
	}
	byDay := map[string][]airing{}
	for _, a := range as.Airings {
		// The airings API has no unit filter: a unit's calendar keeps the
		// airings of its stations.
		if d.Station == "" && !inUnit[a.Station] {
			continue
		}
		day := a.Start.In(s.loc).Format("2006-01-02")
		byDay[day] = append(byDay[day], a)
		d.Total++
	}
	d.Weeks = calendar(first, now, byDay, d.Station == "")
	v.Data = d
	s.render(w, http.StatusOK, "schedule", v)
}

// calendar lays out a month in weeks from Monday, as Vietnamese calendars do.
func calendar(first, today time.Time, byDay map[string][]airing, limit bool) [][]calDay {
	start := first.AddDate(0, 0, -((int(first.Weekday()) + 6) % 7))
	var weeks [][]calDay
	for day := start; day.Month() == first.Month() || day.Before(first); {
		week := make([]calDay, 7)
		for i := range week {
			key := day.Format("2006-01-02")
			as := byDay[key]
			slices.SortFunc(as, func(a, b airing) int { return a.Start.Compare(b.Start) })
			cd := calDay{Date: day, InMonth: day.Month() == first.Month(), Today: key == today.Format("2006-01-02"), Airings: as}
			if limit && len(as) > dayLimit {
				cd.Airings, cd.More = as[:dayLimit], len(as)-dayLimit
			}
			week[i] = cd
			day = day.AddDate(0, 0, 1)
		}
		weeks = append(weeks, week)
	}
	return weeks
}

type airingData struct {
	A           airing
	StationName string
	Devices     []deviceRow
	Entries     []asrunEntry
	Editable    bool
}

type deviceRow struct {
	ID string
	*deviceAiring
}

func (s *Server) airing(w http.ResponseWriter, r *http.Request, ss *session) {
	s.renderAiring(w, r, ss, http.StatusOK, nil, "")
}

func (s *Server) renderAiring(w http.ResponseWriter, r *http.Request, ss *session, status int, actionErr error, typed string) {
	v := s.view(r, ss, "airing.title")
	id := r.PathValue("id")
	d := &airingData{}
	if err := s.get(r, ss, "/api/v1/airings/"+url.PathEscape(id), &d.A); err != nil {
		s.fail(w, r, ss, err)
		return
	}
	var st stationDetail
	if err := s.get(r, ss, "/api/v1/stations/"+url.PathEscape(d.A.Station), &st); err != nil {
		s.fail(w, r, ss, err)
		return
	}
	d.StationName = st.Name
	var first uint64
	for dev, da := range d.A.Devices {
		d.Devices = append(d.Devices, deviceRow{dev, da})
		for _, e := range da.Events {
			if first == 0 || e.Entry < first {
				first = e.Entry
			}
		}
	}
	slices.SortFunc(d.Devices, func(a, b deviceRow) int { return cmp.Compare(a.ID, b.ID) })
	if first > 0 {
		// The entries behind the figures: the station's log from the
		// airing's first event on, kept to this airing's.
		var out struct{ Entries []asrunEntry }
		q := url.Values{"station": {d.A.Station}, "after": {fmt.Sprint(first - 1)}, "limit": {"2000"}}
		if err := s.get(r, ss, "/api/v1/asrun?"+q.Encode(), &out); err != nil {
			s.fail(w, r, ss, err)
			return
		}
		for _, e := range out.Entries {
			if e.Airing == d.A.ID {
				d.Entries = append(d.Entries, e)
			}
		}
	}
	d.Editable = !d.A.Final()
	v.Form["start"] = cmp.Or(typed, d.A.Start.In(s.loc).Format("2006-01-02T15:04"))
	if actionErr != nil {
		v.fieldError(actionErr)
	}
	v.Data = d
	s.render(w, status, "airing", v)
}

func (s *Server) moveAiring(w http.ResponseWriter, r *http.Request, ss *session) {
	typed := r.PostFormValue("start")
	start, err := parseLocalTime(typed, s.loc)
	if err != nil {
		v := s.view(r, ss, "airing.title")
		s.renderAiring(w, r, ss, http.StatusUnprocessableEntity, &apiError{Status: http.StatusUnprocessableEntity, Code: "invalid", Field: "start", Message: v.T("airing.badstart")}, typed)
		return
	}
	id := r.PathValue("id")
	err = s.send(r, ss, http.MethodPatch, "/api/v1/airings/"+url.PathEscape(id), map[string]string{"start": start.Format(time.RFC3339)}, nil)
	s.afterAiringAction(w, r, ss, err, "airing.moved", typed)
}

func (s *Server) cancelAiring(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	err := s.send(r, ss, http.MethodPost, "/api/v1/airings/"+url.PathEscape(id)+"/cancel", nil, nil)
	s.afterAiringAction(w, r, ss, err, "airing.cancelled", "")
}

// afterAiringAction shows a refused edit on the airing's page with the
// API's status and reason (409: overlap, outside hours, frozen), or goes
// back to the page with a note of what was done.
func (s *Server) afterAiringAction(w http.ResponseWriter, r *http.Request, ss *session, err error, doneKey, typed string) {
	var ae *apiError
	if errors.As(err, &ae) && ae.Status != http.StatusUnauthorized && ae.Status != http.StatusNotFound {
		s.renderAiring(w, r, ss, ae.Status, ae, typed)
		return
	}
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	ss.setFlash(s.view(r, nil, "airing.title").T(doneKey))
	http.Redirect(w, r, "/airings/"+url.PathEscape(r.PathValue("id")), http.StatusSeeOther)
}
