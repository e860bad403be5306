package api

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/loaxa/loaxa/broadcast"
)

type tokenRequest struct {
	Name string         `json:"name"`
	Role broadcast.Role `json:"role"`
	Unit string         `json:"unit"`
}

type tokenResponse struct {
	ID    string         `json:"id"`
	Name  string         `json:"name"`
	Role  broadcast.Role `json:"role"`
	Unit  string         `json:"unit"`
	Token string         `json:"token"`
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, by broadcast.Token) {
	var req tokenRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	if req.Name == "" || len(req.Name) > 200 {
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "name", "a token needs a name of 1-200 characters, e.g. the person or script that uses it"))
		return
	}
	if !req.Role.Valid() {
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "role", "role %q is not admin, operator or auditor", req.Role))
		return
	}
	var path string
	if req.Unit != "" {
		u, err := s.opts.Store.Unit(req.Unit)
		if err != nil {
			if broadcast.IsNotFound(err) {
				err = broadcast.FieldError(broadcast.EInvalid, "unit", "unit %q does not exist; import units first", req.Unit)
			}
			s.error(w, r, err)
			return
		}
		path = u.Path
	}
	if err := scope(by, path, "unit "+req.Unit); err != nil {
		s.error(w, r, err)
		return
	}
	now := s.opts.Now()
	secret := broadcast.NewTokenSecret()
	tok := broadcast.Token{ID: broadcast.NewID(now), Name: req.Name, Role: req.Role, Unit: req.Unit, UnitPath: path, Hash: broadcast.HashToken(secret), CreatedAt: now, CreatedBy: by.ID}
	detail, _ := json.Marshal(map[string]string{"name": req.Name, "role": string(req.Role), "unit": req.Unit})
	op := &broadcast.OpEntry{At: now, Actor: actor(by), Action: "token.create", Subject: tok.ID, Detail: detail, Unit: tok.UnitPath}
	if err := s.opts.Store.PutToken(r.Context(), tok, op); err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, tokenResponse{ID: tok.ID, Name: tok.Name, Role: tok.Role, Unit: tok.Unit, Token: secret})
}

func (s *Server) importUnits(w http.ResponseWriter, r *http.Request, by broadcast.Token) {
	r.Body = http.MaxBytesReader(w, r.Body, 32<<20)
	units, stations, err := broadcast.ParseUnitsCSV(r.Body)
	if err != nil {
		s.error(w, r, err)
		return
	}
	detail, _ := json.Marshal(map[string]int{"units": len(units), "stations": len(stations)})
	op := &broadcast.OpEntry{At: s.opts.Now(), Actor: actor(by), Action: "units.import", Subject: fmt.Sprintf("%d units", len(units)), Detail: detail}
	res, err := s.opts.Store.ImportUnits(r.Context(), units, stations, op)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) listUnits(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	parent := r.URL.Query().Get("parent")
	// parent= in another branch answered 200 with an empty list; API.md
	// answers 403 for a unit outside the token's, as GET
	// /api/v1/stations?unit= does. Ancestors stay allowed (they show the way
	// down to the token's unit); unknown parents keep their old answer.
	// Found by TestAuthorisationMatrix.
	if parent != "" && tok.UnitPath != "" {
		if u, err := s.opts.Store.Unit(parent); err == nil && !broadcast.Below(tok.UnitPath, u.Path) {
			if err := scope(tok, u.Path, "unit "+parent); err != nil {
				s.error(w, r, err)
				return
			}
		}
	}
	units, err := s.opts.Store.Units(parent)
	if err != nil {
		s.error(w, r, err)
		return
	}
	// A scoped token sees its own branch: the units on the way down to its
	// unit, and everything below it.
	out := make([]broadcast.Unit, 0, len(units))
	for _, u := range units {
		if tok.Covers(u.Path) || broadcast.Below(tok.UnitPath, u.Path) {
			out = append(out, u)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"units": out})
}

// stationView is a station as API.md shows it: with devices, their status
// and this month's compliance.
type stationView struct {
	broadcast.Station
	Devices    []broadcast.Device `json:"devices"`
	Compliance any                `json:"compliance,omitempty"`
}

func (s *Server) listStations(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	_, path, err := s.unitParam(r, tok)
	if err != nil {
		s.error(w, r, err)
		return
	}
	stations, err := s.opts.Store.Stations(path)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"stations": stations})
}

func (s *Server) getStation(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	st, err := s.opts.Store.Station(r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	if err := scope(tok, st.Path, "station "+st.ID); err != nil {
		s.error(w, r, err)
		return
	}
	devs, err := s.opts.Store.Devices(st.ID)
	if err != nil {
		s.error(w, r, err)
		return
	}
	row, err := s.stationMonth(st, broadcast.MonthOf(s.opts.Now(), s.location(st)))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, stationView{Station: st, Devices: devs, Compliance: row})
}

type deviceRequest struct {
	ID        string `json:"id"`
	PublicKey string `json:"public_key"`
}

type deviceResponse struct {
	ID      string `json:"id"`
	Station string `json:"station"`
	Secret  string `json:"secret"`
}

func (s *Server) addDevice(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	st, err := s.opts.Store.Station(r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	if err := scope(tok, st.Path, "station "+st.ID); err != nil {
		s.error(w, r, err)
		return
	}
	var req deviceRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.error(w, r, err)
		return
	}
	if !broadcast.ValidID(req.ID) {
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "id", "device id %q must be 1-64 characters of A-Z, a-z, 0-9, _ and -, e.g. %s-01", req.ID, st.ID))
		return
	}
	now := s.opts.Now()
	d := broadcast.Device{ID: req.ID, Station: st.ID, CreatedAt: now}
	if req.PublicKey != "" {
		key, err := broadcast.ParsePublicKey(req.PublicKey)
		if err != nil {
			s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "public_key", "%v", err))
			return
		}
		d.PublicKey = key
	}
	secret := broadcast.NewSecret()
	d.SecretHash = broadcast.HashSecret(secret)
	detail, _ := json.Marshal(map[string]any{"station": st.ID, "signed": len(d.PublicKey) > 0})
	op := &broadcast.OpEntry{At: now, Actor: actor(tok), Action: "device.add", Subject: d.ID, Detail: detail, Unit: st.Path}
	if err := s.opts.Store.AddDevice(r.Context(), d, op); err != nil {
		s.error(w, r, err)
		return
	}
	if s.opts.DevicesChanged != nil {
		s.opts.DevicesChanged()
	}
	s.opts.Planner.Touch(st.ID)
	writeJSON(w, http.StatusCreated, deviceResponse{ID: d.ID, Station: st.ID, Secret: secret})
}

func (s *Server) disableDevice(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	d, err := s.opts.Store.Device(r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	st, err := s.opts.Store.Station(d.Station)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if err := scope(tok, st.Path, "device "+d.ID); err != nil {
		s.error(w, r, err)
		return
	}
	now := s.opts.Now()
	op := &broadcast.OpEntry{At: now, Actor: actor(tok), Action: "device.disable", Subject: d.ID, Unit: st.Path}
	if err := s.opts.Store.DisableDevice(r.Context(), d.ID, now, op); err != nil {
		s.error(w, r, err)
		return
	}
	if s.opts.DeviceDisabled != nil {
		s.opts.DeviceDisabled(d.ID)
	}
	if s.opts.DevicesChanged != nil {
		s.opts.DevicesChanged()
	}
	s.opts.Planner.Touch(d.Station)
	d.Disabled, d.DisabledAt = true, now
	writeJSON(w, http.StatusOK, d)
}
