package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/loaxa/loaxa/broadcast"
)

func (s *Server) importUnits(w http.ResponseWriter, r *http.Request, by broadcast.Token) {
	r.Body = http.MaxBytesReader(w, r.Body, 32<<20)
	units, stations, err := broadcast.ParseUnitsCSV(r.Body)
	if err != nil {
		s.error(w, r, err)
		return
	}
	detail, _ := json.Marshal(map[string]int{"units": len(units), "stations": len(stations)})
	op := &broadcast.OpEntry{At: s.opts.Now(), Actor: actor(by), Action: "units.import", Subject: fmt.Sprintf("%d units", len(units)), Detail: detail, Unit: by.UnitPath}
	// A scoped administrator may create and change units below its own
	// only, and move none across its border (the store checks each record
	// in the import's transaction).
	res, err := s.opts.Store.ImportUnitsWithin(r.Context(), units, stations, by.UnitPath, op)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) listUnits(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	parent := r.URL.Query().Get("parent")
	// parent= in another branch answered 200 with an empty list; docs/api.md
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

// stationView is a station as docs/api.md shows it: with devices, their status
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
	if s.reservedDeviceID(req.ID) {
		// A device's id is its MQTT user name: one that is the daemon's
		// would break Mosquitto's password file, or worse, share its
		// access.
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "id", "device id %q is reserved (the daemon's or the broker's own name); choose another, e.g. %s-01", req.ID, st.ID))
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

// reservedDeviceID reports whether id is a name the broker or the daemon
// uses itself.
func (s *Server) reservedDeviceID(id string) bool {
	if strings.HasPrefix(id, "$") {
		return true
	}
	for _, r := range s.opts.ReservedDeviceIDs {
		if r != "" && strings.EqualFold(id, r) {
			return true
		}
	}
	return false
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
