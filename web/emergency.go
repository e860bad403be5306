package web

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/loaxa/loaxa/broadcast/audio"
)

// maxEmergencyAudio bounds an announcement held between the two
// confirmations; a spoken warning is minutes, not hours.
const maxEmergencyAudio = 64 << 20

type emergencyForm struct {
	Units    []unit
	Selected map[string]bool
}

func (s *Server) emergencyForm(w http.ResponseWriter, r *http.Request, ss *session) {
	s.renderEmergencyForm(w, r, ss, http.StatusOK, nil, nil, nil)
}

func (s *Server) renderEmergencyForm(w http.ResponseWriter, r *http.Request, ss *session, status int, fields map[string]string, selected []string, fieldErrs map[string]string) {
	v := s.view(r, ss, "emergency.title")
	if !v.CanWrite() {
		s.refuse(w, r, ss, http.StatusForbidden, "role.refused")
		return
	}
	units, err := s.unitChoices(r, ss)
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	d := &emergencyForm{Units: units, Selected: map[string]bool{}}
	for _, u := range selected {
		d.Selected[u] = true
	}
	for k, val := range fields {
		v.Form[k] = val
	}
	for k, msg := range fieldErrs {
		v.Fields[k] = msg
	}
	v.Data = d
	s.render(w, status, "emergency", v)
}

// emergencyPrepare is the first confirmation: the form (with its "I
// understand" box) is read, the audio waits in a temporary file, and the
// second confirmation page shows what will play where.
func (s *Server) emergencyPrepare(w http.ResponseWriter, r *http.Request, ss *session) {
	v := s.view(r, ss, "emergency.title")
	if !v.CanWrite() {
		s.refuse(w, r, ss, http.StatusForbidden, "role.refused")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxEmergencyAudio+1<<20)
	p, fields, units, err := readEmergency(r, ss.csrf, s.opts.TempDir)
	if errors.Is(err, errCSRF) {
		s.refuse(w, r, ss, http.StatusForbidden, "csrf.refused")
		return
	}
	errs := map[string]string{}
	switch {
	case err != nil:
		errs["audio"] = v.T("emergency.badupload")
	case p.size == 0:
		errs["audio"] = v.T("emergency.noaudio")
	}
	if strings.TrimSpace(fields["title"]) == "" {
		errs["title"] = v.T("emergency.notitle")
	}
	if len(units) == 0 {
		errs["units"] = v.T("emergency.nounits")
	}
	if fields["confirm1"] != "yes" {
		errs["confirm1"] = v.T("emergency.confirm1.needed")
	}
	if len(errs) > 0 {
		p.remove()
		s.renderEmergencyForm(w, r, ss, http.StatusUnprocessableEntity, fields, units, errs)
		return
	}
	p.title, p.units, p.at = strings.TrimSpace(fields["title"]), units, s.opts.Now()
	names, err := s.unitChoices(r, ss)
	if err != nil {
		p.remove()
		s.fail(w, r, ss, err)
		return
	}
	for _, u := range names {
		if slices.Contains(units, u.Code) {
			p.chosen = append(p.chosen, u)
		}
	}
	ss.dropPending()
	ss.mu.Lock()
	ss.pending = p
	ss.mu.Unlock()
	v.Data = map[string]any{"Title": p.title, "Units": p.chosen, "Size": p.size}
	s.render(w, http.StatusOK, "emergency_confirm", v)
}

// readEmergency reads the emergency form: the CSRF token first, then the
// fields, the chosen units and the audio, spooled to a temporary file.
func readEmergency(r *http.Request, csrf, tempDir string) (*pendingEmergency, map[string]string, []string, error) {
	p := &pendingEmergency{}
	fields := map[string]string{}
	var units []string
	mr, err := r.MultipartReader()
	if err != nil {
		return p, fields, nil, fmt.Errorf("emergency form: %w", err)
	}
	ok := sameToken(r.Header.Get(csrfHeader), csrf)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return p, fields, units, fmt.Errorf("emergency form: %w", err)
		}
		name := part.FormName()
		if name != csrfField && !ok {
			return p, fields, units, errCSRF
		}
		if name == "audio" && part.FileName() != "" {
			f, err := os.CreateTemp(tempDir, EmergencyTempPattern)
			if err != nil {
				return p, fields, units, fmt.Errorf("spool emergency audio: %w", err)
			}
			p.remove()
			p.file, p.filename, p.ctype = f.Name(), part.FileName(), part.Header.Get("Content-Type")
			p.size, err = io.Copy(f, io.LimitReader(part, maxEmergencyAudio+1))
			f.Close()
			if err != nil {
				return p, fields, units, fmt.Errorf("spool emergency audio: %w", err)
			}
			if p.size > maxEmergencyAudio {
				return p, fields, units, errors.New("emergency audio too large")
			}
			continue
		}
		b, err := io.ReadAll(io.LimitReader(part, 4<<10))
		if err != nil {
			return p, fields, units, fmt.Errorf("emergency form: %w", err)
		}
		switch name {
		case csrfField:
			ok = ok || sameToken(string(b), csrf)
		case "unit":
			units = append(units, string(b))
		default:
			fields[name] = string(b)
		}
	}
	if !ok {
		return p, fields, units, errCSRF
	}
	return p, fields, units, nil
}

// EmergencyTempPattern names the files that hold emergency audio between
// its two confirmations (os.CreateTemp's pattern); a daemon killed meanwhile
// leaves them, and removes them at its next start.
const EmergencyTempPattern = "loaxa-emergency-*"

// emergencyPendingAudio lets the operator hear what is about to go out.
func (s *Server) emergencyPendingAudio(w http.ResponseWriter, r *http.Request, ss *session) {
	ss.mu.Lock()
	p := ss.pending
	ss.mu.Unlock()
	if p == nil {
		s.refuse(w, r, ss, http.StatusNotFound, "emergency.expired")
		return
	}
	f, err := os.Open(p.file)
	if err != nil {
		s.refuse(w, r, ss, http.StatusNotFound, "emergency.expired")
		return
	}
	defer f.Close()
	// Not the browser's word for the file (p.ctype), which an uploader
	// chooses: the type of the audio it starts like, never sniffed, and
	// sandboxed should it be opened as a page (see api's audio).
	head := make([]byte, 16)
	n, _ := f.ReadAt(head, 0)
	ext, ctype := audio.Kind(head[:n])
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": "emergency." + ext}))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	h.Set("Cache-Control", "no-store")
	http.ServeContent(w, r, "", p.at, f)
}

type sent struct {
	Unit      string
	Programme string
	Stations  int
	Devices   int
	Sent      int
	Failed    []string
	Err       string
}

// emergencyConfirm is the second confirmation: one API call per unit, each
// with the same audio.
func (s *Server) emergencyConfirm(w http.ResponseWriter, r *http.Request, ss *session) {
	v := s.view(r, ss, "emergency.title")
	ss.mu.Lock()
	p := ss.pending
	ss.mu.Unlock()
	if p == nil {
		s.refuse(w, r, ss, http.StatusConflict, "emergency.expired")
		return
	}
	if r.PostFormValue("confirm2") != "yes" {
		v.Data = map[string]any{"Title": p.title, "Units": p.chosen, "Size": p.size}
		v.Fields["confirm2"] = v.T("emergency.confirm2.needed")
		s.render(w, http.StatusUnprocessableEntity, "emergency_confirm", v)
		return
	}
	var results []sent
	q := url.Values{}
	for _, u := range p.units {
		res := sent{Unit: u}
		var out struct {
			Programme programme `json:"programme"`
			Broadcast struct {
				Stations int      `json:"stations"`
				Devices  int      `json:"devices"`
				Sent     int      `json:"sent"`
				Failed   []string `json:"failed_devices"`
			} `json:"broadcast"`
		}
		err := s.postEmergency(r, ss, p, u, &out)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				s.fail(w, r, ss, err)
				return
			}
			res.Err = v.apiWords(ae)
		} else {
			res.Programme, res.Stations, res.Devices, res.Sent, res.Failed = out.Programme.ID, out.Broadcast.Stations, out.Broadcast.Devices, out.Broadcast.Sent, out.Broadcast.Failed
			q.Add("p", out.Programme.ID)
		}
		results = append(results, res)
	}
	ss.dropPending()
	var failed []string
	for _, res := range results {
		if res.Err != "" {
			failed = append(failed, res.Unit+": "+res.Err)
		}
	}
	if len(failed) > 0 {
		ss.setFlash(v.T("emergency.partial", strings.Join(failed, "; ")))
	} else {
		ss.setFlash(v.T("emergency.sent", len(results)))
	}
	http.Redirect(w, r, "/emergency/live?"+q.Encode(), http.StatusSeeOther)
}

func (s *Server) postEmergency(r *http.Request, ss *session, p *pendingEmergency, unitCode string, out any) error {
	f, err := os.Open(p.file)
	if err != nil {
		return fmt.Errorf("open emergency audio: %w", err)
	}
	defer f.Close()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		err := func() error {
			for _, kv := range [][2]string{{"unit", unitCode}, {"title", p.title}} {
				if err := mw.WriteField(kv[0], kv[1]); err != nil {
					return err
				}
			}
			h := textproto.MIMEHeader{}
			h.Set("Content-Disposition", mime.FormatMediaType("form-data", map[string]string{"name": "audio", "filename": p.filename}))
			if p.ctype != "" {
				h.Set("Content-Type", p.ctype)
			}
			dst, err := mw.CreatePart(h)
			if err != nil {
				return err
			}
			if _, err := io.Copy(dst, f); err != nil {
				return err
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()
	err = s.apiCall(r, ss.token, http.MethodPost, "/api/v1/emergency", pr, mw.FormDataContentType(), out)
	pr.CloseWithError(errAPIDone)
	return err
}

type liveProgramme struct {
	P                 programme
	Stations          int
	Devices           int
	Started, Finished int
	Failed            int
	Rows              []liveRow
}

type liveRow struct {
	Station, Name string
	Status        string
	Devices       []deviceRow
}

// emergencyLiveData is what the live page of a broadcast shows.
func (s *Server) emergencyLiveData(r *http.Request, ss *session) (any, error) {
	d, err := s.liveData(r, ss)
	if err != nil {
		return nil, err
	}
	return map[string]any{"Programmes": d, "Query": r.URL.RawQuery}, nil
}

// liveData follows emergency broadcasts by their airings: which devices
// started, which finished.
func (s *Server) liveData(r *http.Request, ss *session) ([]liveProgramme, error) {
	var out []liveProgramme
	for _, id := range r.URL.Query()["p"] {
		lp := liveProgramme{}
		if err := s.get(r, ss, "/api/v1/programmes/"+url.PathEscape(id), &lp.P); err != nil {
			return nil, err
		}
		var as struct{ Airings []airing }
		if err := s.get(r, ss, "/api/v1/airings?"+url.Values{"programme": {id}}.Encode(), &as); err != nil {
			return nil, err
		}
		names, err := s.stationNames(r, ss, lp.P.Unit)
		if err != nil {
			return nil, err
		}
		for _, a := range as.Airings {
			row := liveRow{Station: a.Station, Name: names[a.Station], Status: a.Status}
			for dev, da := range a.Devices {
				row.Devices = append(row.Devices, deviceRow{dev, da})
				lp.Devices++
				for _, e := range da.Events {
					switch e.Event {
					case "started":
						lp.Started++
					case "finished":
						lp.Finished++
					case "failed", "skipped":
						lp.Failed++
					}
				}
			}
			slices.SortFunc(row.Devices, func(a, b deviceRow) int { return strings.Compare(a.ID, b.ID) })
			lp.Rows = append(lp.Rows, row)
		}
		lp.Stations = len(lp.Rows)
		out = append(out, lp)
	}
	return out, nil
}
