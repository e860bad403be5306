package web

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"html"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"

	qrcode "github.com/skip2/go-qrcode"
	"go.yaml.in/yaml/v3"
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
	d.DaemonURL, d.Broker = s.opts.PublicURL, s.opts.Broker
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

// validBroker checks the broker an operator typed for a station config:
// one URL of a scheme loaxa-station takes, with a host and nothing else (a
// line break would start a new key in the YAML a naive writer produced).
func validBroker(b string) bool {
	if b == "" || len(b) > 512 || strings.ContainsFunc(b, func(r rune) bool { return r <= ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) }) {
		return false
	}
	u, err := url.Parse(b)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/" && u.Scheme != "ws" && u.Scheme != "wss") {
		return false
	}
	switch u.Scheme {
	case "tcp", "ssl", "mqtt", "mqtts", "ws", "wss":
		return true
	}
	return false
}

type deviceAdded struct {
	ID, Station, StationName, Secret, Config string
	QR                                       template.HTML
}

func (s *Server) addDevice(w http.ResponseWriter, r *http.Request, ss *session) {
	stID := r.PathValue("id")
	form := map[string]string{"id": strings.TrimSpace(r.PostFormValue("id")), "public_key": strings.TrimSpace(r.PostFormValue("public_key")),
		"broker": strings.TrimSpace(r.PostFormValue("broker"))}
	if form["broker"] != "" && !validBroker(form["broker"]) {
		v := s.view(r, ss, "station.title")
		s.renderStation(w, r, ss, http.StatusUnprocessableEntity,
			&apiError{Status: http.StatusUnprocessableEntity, Code: "invalid", Field: "broker", Message: v.T("dev.broker.bad")}, form)
		return
	}
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
	conf, err := stationConfig(out.ID, out.Secret, cmp.Or(form["broker"], s.opts.Broker), s.opts.PublicURL, s.opts.TopicRoot, form["public_key"] != "")
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	d := deviceAdded{ID: out.ID, Station: out.Station, StationName: st.Name, Secret: out.Secret, Config: conf}
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

// stationFile is loaxa-station's --config file for a new device
// (cmd/loaxa-station/station.example.yaml), in its keys' order.
type stationFile struct {
	Device    string   `yaml:"device"`
	Secret    string   `yaml:"secret"`
	Broker    string   `yaml:"broker"`
	DaemonURL string   `yaml:"daemon_url"`
	TopicRoot string   `yaml:"topic_root"`
	KeyFile   string   `yaml:"key_file,omitempty"`
	DataDir   string   `yaml:"data_dir"`
	Player    []string `yaml:"player,flow"`
	Volume    int      `yaml:"volume"`
}

// stationConfig writes the file with a YAML encoder: every value is
// quoted as it needs, so that no value (a broker typed with a line break)
// can add a key. daemonURL is http.public_url, never the request's Host,
// which whoever sends the request chooses.
func stationConfig(id, secret, broker, daemonURL, topicRoot string, signed bool) (string, error) {
	// None of these has a use for a control character, and yaml.v3 writes
	// some (a tab before a line break) as a block it cannot read back.
	for key, val := range map[string]string{"device": id, "secret": secret, "broker": broker, "daemon_url": daemonURL, "topic_root": topicRoot} {
		if strings.ContainsFunc(val, func(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }) {
			return "", fmt.Errorf("web: station config of %q: %s holds a control character", id, key)
		}
	}
	f := stationFile{Device: id, Secret: secret, Broker: broker, DaemonURL: daemonURL, TopicRoot: cmp.Or(topicRoot, "loaxa/v1"),
		DataDir: "/var/lib/loaxa-station", Player: []string{"mpv", "--no-video", "--really-quiet", "--volume={volume}", "{file}"}, Volume: 80}
	if signed {
		f.KeyFile = "device.key"
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return "", fmt.Errorf("web: station config of %s: %w", id, err)
	}
	if err := enc.Close(); err != nil {
		return "", fmt.Errorf("web: station config of %s: %w", id, err)
	}
	return b.String(), nil
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
