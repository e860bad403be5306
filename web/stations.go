package web

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"html"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	qrcode "github.com/skip2/go-qrcode"
)

type unitsData struct {
	Unit     unit
	Trail    []unit
	Children []unit
	Stations []station
}

// units browses the unit tree: a unit's children and the stations at it.
func (s *Server) units(w http.ResponseWriter, r *http.Request, ss *session) {
	v := s.view(r, ss, "units.title")
	code := cmp.Or(r.URL.Query().Get("unit"), ss.me.Unit)
	d := &unitsData{}
	var us struct{ Units []unit }
	if err := s.get(r, ss, "/api/v1/units?"+url.Values{"parent": {code}}.Encode(), &us); err != nil {
		s.fail(w, r, ss, err)
		return
	}
	d.Children = us.Units
	if code != "" {
		var sts struct{ Stations []station }
		if err := s.get(r, ss, "/api/v1/stations?"+url.Values{"unit": {code}}.Encode(), &sts); err != nil {
			s.fail(w, r, ss, err)
			return
		}
		// The stations of this unit and of the units just below it; deeper
		// ones are a click away. A commune is then listed as a station, not
		// also as a unit.
		withStation := map[string]bool{}
		for _, st := range sts.Stations {
			codes := strings.Split(st.Path, "/")
			if st.Unit == code || (len(codes) >= 2 && codes[len(codes)-2] == code) {
				d.Stations = append(d.Stations, st)
				withStation[st.Unit] = true
			}
		}
		d.Children = slices.DeleteFunc(d.Children, func(u unit) bool { return withStation[u.Code] })
		d.Unit = unit{Code: code, Name: code}
		if len(sts.Stations) > 0 {
			codes := strings.Split(sts.Stations[0].Path, "/")
			for i, c := range codes {
				d.Trail = append(d.Trail, unit{Code: c, Name: c})
				if c == code {
					d.Trail = d.Trail[:i+1]
					break
				}
			}
		}
		if code == ss.me.Unit && ss.me.UnitName != "" {
			d.Unit.Name = ss.me.UnitName
		}
	}
	slices.SortFunc(d.Stations, func(a, b station) int { return cmp.Compare(a.Name, b.Name) })
	v.Data = d
	s.render(w, http.StatusOK, "units", v)
}

type deviceView struct {
	device
	State *deviceState
}

type stationData struct {
	St        stationDetail
	Devices   []deviceView
	NextID    string
	Broker    string
	DaemonURL string
}

func (s *Server) station(w http.ResponseWriter, r *http.Request, ss *session) {
	s.renderStation(w, r, ss, http.StatusOK, nil, nil)
}

func (s *Server) renderStation(w http.ResponseWriter, r *http.Request, ss *session, status int, actionErr error, form map[string]string) {
	v := s.view(r, ss, "station.title")
	id := r.PathValue("id")
	d := &stationData{}
	if err := s.get(r, ss, "/api/v1/stations/"+url.PathEscape(id), &d.St); err != nil {
		s.fail(w, r, ss, err)
		return
	}
	var ds deviceStates
	if err := s.get(r, ss, "/api/v1/devices/status?"+url.Values{"station": {id}}.Encode(), &ds); err != nil {
		s.fail(w, r, ss, err)
		return
	}
	states := map[string]*deviceState{}
	for i := range ds.Devices {
		states[ds.Devices[i].Device] = &ds.Devices[i]
	}
	for _, dev := range d.St.Devices {
		d.Devices = append(d.Devices, deviceView{dev, states[dev.ID]})
	}
	d.NextID = fmt.Sprintf("%s-%02d", d.St.ID, len(d.St.Devices)+1)
	d.DaemonURL, d.Broker = origins(r)
	v.Form["id"], v.Form["broker"] = d.NextID, d.Broker
	for k, val := range form {
		v.Form[k] = val
	}
	if actionErr != nil {
		v.fieldError(actionErr)
	}
	v.Data = d
	s.render(w, status, "station", v)
}

// origins guesses, from the request, the daemon's URL and its MQTT broker
// (the embedded one's default port on the same host), to prefill the
// technician's configuration; the operator can change the broker.
func origins(r *http.Request) (daemonURL, broker string) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	return scheme + "://" + host, "tcp://" + h + ":1883"
}

type deviceAdded struct {
	ID, Station, StationName, Secret, Config string
	QR                                       template.HTML
}

func (s *Server) addDevice(w http.ResponseWriter, r *http.Request, ss *session) {
	stID := r.PathValue("id")
	form := map[string]string{"id": strings.TrimSpace(r.PostFormValue("id")), "public_key": strings.TrimSpace(r.PostFormValue("public_key")),
		"broker": strings.TrimSpace(r.PostFormValue("broker"))}
	var out struct{ ID, Station, Secret string }
	err := s.send(r, ss, http.MethodPost, "/api/v1/stations/"+url.PathEscape(stID)+"/devices",
		map[string]string{"id": form["id"], "public_key": form["public_key"]}, &out)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status != http.StatusUnauthorized && ae.Status != http.StatusNotFound {
		s.renderStation(w, r, ss, ae.Status, ae, form)
		return
	}
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	var st stationDetail
	if err := s.get(r, ss, "/api/v1/stations/"+url.PathEscape(stID), &st); err != nil {
		s.fail(w, r, ss, err)
		return
	}
	daemonURL, broker := origins(r)
	d := deviceAdded{ID: out.ID, Station: out.Station, StationName: st.Name, Secret: out.Secret,
		Config: stationConfig(out.ID, out.Secret, cmp.Or(form["broker"], broker), daemonURL, form["public_key"] != "")}
	v := s.view(r, ss, "device.title")
	qr, err := qrSVG(d.Config, v.T("device.qr"))
	if err != nil {
		s.log.Warn("device config QR code", "err", err)
	}
	d.QR = qr
	v.Data = d
	// The secret is shown this once: the page must not be cached or kept.
	s.render(w, http.StatusCreated, "device", v)
}

// stationConfig is loaxa-station's --config file for a new device
// (cmd/loaxa-station/station.example.yaml).
func stationConfig(id, secret, broker, daemonURL string, signed bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "device: %s\nsecret: %q\nbroker: %s\ndaemon_url: %s\ntopic_root: loaxa/v1\n", id, secret, broker, daemonURL)
	if signed {
		b.WriteString("key_file: device.key\n")
	}
	b.WriteString("data_dir: /var/lib/loaxa-station\nplayer: [\"mpv\", \"--no-video\", \"--really-quiet\", \"--volume={volume}\", \"{file}\"]\nvolume: 80\n")
	return b.String()
}

// qrSVG draws a QR code as inline SVG: one path, crisp at any size, and no
// image request (nor data: URL) for the browser to make.
func qrSVG(content, label string) (template.HTML, error) {
	q, err := qrcode.New(content, qrcode.Low)
	if err != nil {
		return "", fmt.Errorf("encode QR code: %w", err)
	}
	q.DisableBorder = false
	bits := q.Bitmap()
	n := len(bits)
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" class="qr" role="img" aria-label="%s"><rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, n, n, html.EscapeString(label), n, n)
	for y, row := range bits {
		for x, on := range row {
			if on {
				fmt.Fprintf(&b, "M%d %dh1v1h-1z", x, y)
			}
		}
	}
	b.WriteString(`"/></svg>`)
	return template.HTML(b.String()), nil
}

func (s *Server) disableDevice(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	var dev device
	if err := s.send(r, ss, http.MethodDelete, "/api/v1/devices/"+url.PathEscape(id), nil, &dev); err != nil {
		s.fail(w, r, ss, err)
		return
	}
	ss.setFlash(s.view(r, nil, "station.title").T("device.disabled", dev.ID))
	http.Redirect(w, r, "/stations/"+url.PathEscape(dev.Station), http.StatusSeeOther)
}
