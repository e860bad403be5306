package api

import (
	"encoding/json"
	"net/http"
	"unicode/utf8"

	"github.com/loaxa/loaxa/broadcast"
)

// emergency plays an announcement now on every device below a unit. It
// skips review on purpose: a flood warning cannot wait for a second
// operator; the operations log records who sent it.
func (s *Server) emergency(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	u, err := s.readUpload(w, r, "audio")
	if err != nil {
		s.error(w, r, err)
		return
	}
	defer u.close()
	unit, err := s.opts.Store.Unit(u.fields["unit"])
	if err != nil {
		if broadcast.IsNotFound(err) || u.fields["unit"] == "" {
			err = broadcast.FieldError(broadcast.EInvalid, "unit", "unit %q does not exist", u.fields["unit"])
		}
		s.error(w, r, err)
		return
	}
	if err := scope(tok, unit.Path, "unit "+unit.Code); err != nil {
		s.error(w, r, err)
		return
	}
	title := u.fields["title"]
	if title == "" || utf8.RuneCountInString(title) > 300 {
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "title", "an emergency broadcast needs a title of 1-300 characters"))
		return
	}
	a, err := s.storeAudio(u)
	if err != nil {
		s.error(w, r, err)
		return
	}
	now := s.opts.Now()
	p := broadcast.Programme{
		ID: broadcast.NewID(now), Unit: unit.Code, UnitPath: unit.Path, Month: broadcast.MonthOf(now, s.opts.Location),
		Title: broadcast.NFC(title), Description: broadcast.NFC(u.fields["description"]), Audio: a, Priority: broadcast.PriorityEmergency,
		Status: broadcast.ProgrammeApproved, UploadedBy: tok.ID, ApprovedBy: tok.ID, UploaderName: tok.Name, ApproverName: tok.Name, CreatedAt: now, ApprovedAt: now,
	}
	detail, _ := json.Marshal(map[string]any{"unit": p.Unit, "title": p.Title, "sha256": a.SHA256, "duration_ms": a.DurationMS})
	op := &broadcast.OpEntry{At: now, Actor: actor(tok), Action: "emergency.broadcast", Subject: p.ID, Detail: detail, Unit: p.UnitPath}
	if err := s.opts.Store.CreateProgramme(r.Context(), p, op); err != nil {
		s.error(w, r, err)
		return
	}
	res, err := s.opts.Planner.Emergency(r.Context(), p, actor(tok))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"programme": s.programmeView(p), "broadcast": res})
}
