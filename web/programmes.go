package web

import (
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
)

var (
	errCSRF    = errors.New("web: CSRF token missing or wrong")
	errAPIDone = errors.New("web: the API stopped reading the upload")
)

// forwardMultipart streams the browser's multipart form to the API as a
// fresh multipart body through a pipe, so that a 100 MB programme is never
// held by the console (the API spools it, as it does for any client). The
// CSRF token comes in the X-CSRF-Token header (XHR) or as a field before
// the file: browsers send fields in the form's order, and the forms put it
// first. The small fields are returned, to show the form again on error.
func (s *Server) forwardMultipart(r *http.Request, ss *session, apiPath string, out any) (map[string]string, error) {
	fields := map[string]string{}
	mr, err := r.MultipartReader()
	if err != nil {
		return fields, &apiError{Status: http.StatusBadRequest, Code: "malformed", Message: "want a multipart/form-data body"}
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	done := make(chan error, 1)
	go func() {
		err := copyParts(mr, mw, ss.csrf, r.Header.Get(csrfHeader), fields)
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err) // nil: the API reads EOF
		done <- err
	}()
	callErr := s.apiCall(r, ss.token, http.MethodPost, apiPath, pr, mw.FormDataContentType(), out)
	// An API that answered without reading everything (a refusal) must not
	// leave the copier blocked on the pipe.
	pr.CloseWithError(errAPIDone)
	if err := <-done; errors.Is(err, errCSRF) {
		return fields, errCSRF
	}
	return fields, callErr
}

// copyParts re-encodes the browser's parts, refusing everything after a
// missing or wrong CSRF token.
func copyParts(mr *multipart.Reader, mw *multipart.Writer, want, header string, fields map[string]string) error {
	ok := sameToken(header, want)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := part.FormName()
		if name == csrfField {
			b, err := io.ReadAll(io.LimitReader(part, 256))
			if err != nil {
				return err
			}
			ok = ok || sameToken(string(b), want)
			continue
		}
		if !ok {
			return errCSRF
		}
		if part.FileName() == "" {
			// The API bounds fields to 64 KiB; one byte more lets it say so.
			b, err := io.ReadAll(io.LimitReader(part, 64<<10+1))
			if err != nil {
				return err
			}
			fields[name] = string(b)
			if err := mw.WriteField(name, string(b)); err != nil {
				return err
			}
			continue
		}
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", mime.FormatMediaType("form-data", map[string]string{"name": name, "filename": part.FileName()}))
		if ct := part.Header.Get("Content-Type"); ct != "" {
			h.Set("Content-Type", ct)
		}
		dst, err := mw.CreatePart(h)
		if err != nil {
			return err
		}
		if _, err := io.Copy(dst, part); err != nil {
			return err
		}
	}
	if !ok {
		return errCSRF
	}
	return nil
}

func isXHR(r *http.Request) bool { return r.Header.Get("X-Requested-With") != "" }

type programmesData struct {
	Month, Unit string
	Units       []unit
	Programmes  []programme
	Priorities  []string
}

func (s *Server) programmes(w http.ResponseWriter, r *http.Request, ss *session) {
	s.renderProgrammes(w, r, ss, http.StatusOK, nil, nil)
}

// renderProgrammes shows the list and the upload form; after a refused
// upload, with what was typed and the API's words next to the field.
func (s *Server) renderProgrammes(w http.ResponseWriter, r *http.Request, ss *session, status int, form map[string]string, apiErr error) {
	v := s.view(r, ss, "programmes.title")
	q := r.URL.Query()
	d := &programmesData{Month: q.Get("month"), Unit: q.Get("unit"), Priorities: []string{"normal", "priority"}}
	var ps struct{ Programmes []programme }
	if err := s.get(r, ss, "/api/v1/programmes?"+url.Values{"month": {d.Month}, "unit": {d.Unit}}.Encode(), &ps); err != nil {
		if status == http.StatusOK {
			s.fail(w, r, ss, err)
			return
		}
	}
	d.Programmes = ps.Programmes
	slices.SortStableFunc(d.Programmes, func(a, b programme) int { return b.CreatedAt.Compare(a.CreatedAt) })
	units, err := s.unitChoices(r, ss)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	d.Units = units
	v.Form["month"] = s.opts.Now().In(s.loc).Format("2006-01")
	v.Form["unit"] = ss.me.Unit
	for k, val := range form {
		v.Form[k] = val
	}
	if apiErr != nil {
		v.fieldError(apiErr)
	}
	v.Data = d
	s.render(w, status, "programmes", v)
}

// unitChoices are the units a user may pick for a programme: their own
// and the ones just below it (for a whole-tree token, the roots and theirs).
func (s *Server) unitChoices(r *http.Request, ss *session) ([]unit, error) {
	var out []unit
	var roots []unit
	if ss.me.Unit != "" {
		roots = []unit{{Code: ss.me.Unit, Name: ss.me.UnitName}}
	} else {
		var us struct{ Units []unit }
		if err := s.get(r, ss, "/api/v1/units", &us); err != nil {
			return nil, err
		}
		roots = us.Units
	}
	for _, root := range roots {
		out = append(out, root)
		var us struct{ Units []unit }
		if err := s.get(r, ss, "/api/v1/units?"+url.Values{"parent": {root.Code}}.Encode(), &us); err != nil {
			return nil, err
		}
		for _, u := range us.Units {
			u.Name = "— " + u.Name
			out = append(out, u)
		}
	}
	return out, nil
}

func (s *Server) uploadProgramme(w http.ResponseWriter, r *http.Request, ss *session) {
	var p programme
	fields, err := s.forwardMultipart(r, ss, "/api/v1/programmes", &p)
	var ae *apiError
	switch {
	case errors.Is(err, errCSRF):
		s.refuse(w, r, ss, http.StatusForbidden, "csrf.refused")
		return
	case errors.As(err, &ae) && ae.Status != http.StatusUnauthorized:
		if isXHR(r) {
			v := s.view(r, ss, "programmes.title")
			writeJSONError(w, ae.Status, ae.Code, v.apiWords(ae), ae.Field)
			return
		}
		s.renderProgrammes(w, r, ss, ae.Status, fields, ae)
		return
	case err != nil:
		s.fail(w, r, ss, err)
		return
	}
	v := s.view(r, ss, "programmes.title")
	ss.setFlash(v.T("programme.uploaded", p.Title))
	if isXHR(r) {
		writeJSON(w, http.StatusCreated, map[string]string{"redirect": "/programmes/" + p.ID})
		return
	}
	http.Redirect(w, r, "/programmes/"+p.ID, http.StatusSeeOther)
}

type programmeData struct {
	P        programme
	Airings  []airing
	Names    map[string]string
	Mine     bool // uploaded with this session's token: another must approve
	Emerg    bool
	Counts   map[string]int
	Stations int
}

func (s *Server) programme(w http.ResponseWriter, r *http.Request, ss *session) {
	s.renderProgramme(w, r, ss, http.StatusOK, nil)
}

func (s *Server) renderProgramme(w http.ResponseWriter, r *http.Request, ss *session, status int, actionErr error) {
	v := s.view(r, ss, "programme.title")
	id := r.PathValue("id")
	d := &programmeData{Names: map[string]string{}, Counts: map[string]int{}}
	if err := s.get(r, ss, "/api/v1/programmes/"+url.PathEscape(id), &d.P); err != nil {
		s.fail(w, r, ss, err)
		return
	}
	var as struct{ Airings []airing }
	if err := s.get(r, ss, "/api/v1/airings?"+url.Values{"programme": {id}}.Encode(), &as); err != nil {
		s.fail(w, r, ss, err)
		return
	}
	d.Airings = as.Airings
	seen := map[string]bool{}
	for _, a := range d.Airings {
		d.Counts[a.Status]++
		seen[a.Station] = true
	}
	d.Stations = len(seen)
	if len(d.Airings) > 0 {
		names, err := s.stationNames(r, ss, d.P.Unit)
		if err != nil {
			s.fail(w, r, ss, err)
			return
		}
		d.Names = names
	}
	d.Mine = d.P.UploadedBy == ss.me.ID
	d.Emerg = d.P.Priority >= 2
	if actionErr != nil {
		v.fieldError(actionErr)
	}
	v.Data = d
	s.render(w, status, "programme", v)
}

// stationNames names the stations below a unit.
func (s *Server) stationNames(r *http.Request, ss *session, unitCode string) (map[string]string, error) {
	var sts struct{ Stations []station }
	if err := s.get(r, ss, "/api/v1/stations?"+url.Values{"unit": {unitCode}}.Encode(), &sts); err != nil {
		return nil, err
	}
	names := make(map[string]string, len(sts.Stations))
	for _, st := range sts.Stations {
		names[st.ID] = st.Name
	}
	return names, nil
}

type planResult struct {
	Stations  int `json:"stations"`
	Required  int `json:"required_per_station"`
	Planned   int `json:"airings_planned"`
	Displaced int `json:"airings_displaced"`
	Shortfall []struct {
		Station string `json:"station"`
		Planned int    `json:"planned"`
	} `json:"short_stations"`
}

// programmeAction approves or withdraws a programme; the API decides who
// may (the uploader may not approve their own), and its words are shown.
func (s *Server) programmeAction(action string) handler {
	return func(w http.ResponseWriter, r *http.Request, ss *session) {
		id := r.PathValue("id")
		var out struct {
			Plan             planResult `json:"plan"`
			AiringsCancelled int        `json:"airings_cancelled"`
		}
		err := s.send(r, ss, http.MethodPost, "/api/v1/programmes/"+url.PathEscape(id)+"/"+action, nil, &out)
		var ae *apiError
		if errors.As(err, &ae) && ae.Status != http.StatusUnauthorized && ae.Status != http.StatusNotFound {
			s.renderProgramme(w, r, ss, ae.Status, ae)
			return
		}
		if err != nil {
			s.fail(w, r, ss, err)
			return
		}
		v := s.view(r, ss, "programme.title")
		if action == "approve" {
			ss.setFlash(v.T("programme.approved", out.Plan.Planned, out.Plan.Stations, len(out.Plan.Shortfall)))
		} else {
			ss.setFlash(v.T("programme.withdrawn", out.AiringsCancelled))
		}
		http.Redirect(w, r, "/programmes/"+url.PathEscape(id), http.StatusSeeOther)
	}
}

// media plays a programme's audio in the browser: the API's /audio/ with
// the session's token, Range passed through so that the player can seek.
func (s *Server) media(w http.ResponseWriter, r *http.Request, ss *session) {
	sha := r.PathValue("sha")
	if len(sha) != 64 || strings.Trim(sha, "0123456789abcdef") != "" {
		s.refuse(w, r, ss, http.StatusNotFound, "notfound.text")
		return
	}
	s.stream(w, r, ss, "/audio/"+sha)
}
