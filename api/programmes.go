package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/broadcast/audio"
	"github.com/loaxa/loaxa/scheduler"
)

// upload is a programme's form, with its audio spooled to a temporary file.
type upload struct {
	fields map[string]string
	file   *os.File
	size   int64
}

func (u *upload) close() {
	if u.file != nil {
		u.file.Close()
		os.Remove(u.file.Name())
	}
}

// readUpload streams a multipart form: small fields into memory, the audio
// part to a temporary file, so that a 100 MB programme never sits in memory.
func (s *Server) readUpload(w http.ResponseWriter, r *http.Request, fileField string) (*upload, error) {
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxUpload)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, broadcast.Errorf(broadcast.EMalformed, "want a multipart/form-data body: %v", err)
	}
	u := &upload{fields: map[string]string{}}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			u.close()
			return nil, uploadError(err)
		}
		name := part.FormName()
		if name == fileField {
			if u.file != nil {
				u.close()
				return nil, broadcast.FieldError(broadcast.EInvalid, fileField, "more than one %s file", fileField)
			}
			if err := u.spool(part, s.opts.TempDir); err != nil {
				u.close()
				return nil, err
			}
			continue
		}
		b, err := io.ReadAll(io.LimitReader(part, 64<<10+1))
		if err != nil {
			u.close()
			return nil, uploadError(err)
		}
		if len(b) > 64<<10 {
			u.close()
			return nil, broadcast.FieldError(broadcast.ETooLarge, name, "field is longer than 64 KiB")
		}
		if !utf8.Valid(b) {
			u.close()
			return nil, broadcast.FieldError(broadcast.EInvalid, name, "field is not valid UTF-8")
		}
		u.fields[name] = strings.TrimSpace(string(b))
	}
	if u.file == nil {
		return nil, broadcast.FieldError(broadcast.EInvalid, fileField, "the form has no %s file", fileField)
	}
	return u, nil
}

// UploadTempPattern names the files uploads are spooled to in TempDir
// (os.CreateTemp's pattern): a daemon killed during an upload leaves one,
// which the daemon removes at its next start.
const UploadTempPattern = "upload-*"

func (u *upload) spool(part *multipart.Part, dir string) error {
	f, err := os.CreateTemp(dir, UploadTempPattern)
	if err != nil {
		return fmt.Errorf("spool upload: %w", err)
	}
	u.file = f
	n, err := io.Copy(f, part)
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		// The server's fault, not the client's: the error handler answers 507.
		return fmt.Errorf("spool upload to %s: %w", f.Name(), err)
	}
	if err != nil {
		return uploadError(err)
	}
	u.size = n
	return nil
}

func uploadError(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return broadcast.Errorf(broadcast.ETooLarge, "the upload is larger than %d bytes", tooBig.Limit)
	}
	return broadcast.Errorf(broadcast.EMalformed, "reading the upload failed (cut off?): %v", err)
}

// probeAudio checks that the spooled file is audio we take and learns its
// format and length.
func probeAudio(f *os.File, size int64) (broadcast.Audio, error) {
	if size == 0 {
		return broadcast.Audio{}, broadcast.FieldError(broadcast.EInvalid, "audio", "the audio file is empty")
	}
	info, err := audio.Probe(f, size)
	switch {
	case errors.Is(err, audio.ErrUnsupported):
		return broadcast.Audio{}, broadcast.FieldError(broadcast.EUnsupported, "audio", "%v; loaxa takes MP3, WAV, Ogg/Opus and WebM/Opus", err)
	case errors.Is(err, audio.ErrCorrupt):
		return broadcast.Audio{}, broadcast.FieldError(broadcast.EInvalid, "audio", "%v", err)
	case err != nil:
		return broadcast.Audio{}, fmt.Errorf("probe audio: %w", err)
	}
	return broadcast.Audio{Size: size, Format: info.Format, Type: info.MIME, DurationMS: info.Duration.Milliseconds()}, nil
}

// storeAudio moves a checked upload into the content-addressed blob store.
func (s *Server) storeAudio(u *upload) (broadcast.Audio, error) {
	a, err := probeAudio(u.file, u.size)
	if err != nil {
		return a, err
	}
	if _, err := u.file.Seek(0, io.SeekStart); err != nil {
		return a, fmt.Errorf("rewind upload: %w", err)
	}
	sha, size, err := s.opts.Store.PutBlob(u.file)
	if err != nil {
		return a, fmt.Errorf("store audio: %w", err)
	}
	a.SHA256, a.Size = sha, size
	return a, nil
}

func (s *Server) uploadProgramme(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	u, err := s.readUpload(w, r, "audio")
	if err != nil {
		s.error(w, r, err)
		return
	}
	defer u.close()
	f := u.fields
	unit, err := s.opts.Store.Unit(f["unit"])
	if err != nil {
		if broadcast.IsNotFound(err) || f["unit"] == "" {
			err = broadcast.FieldError(broadcast.EInvalid, "unit", "unit %q does not exist", f["unit"])
		}
		s.error(w, r, err)
		return
	}
	if err := scope(tok, unit.Path, "unit "+unit.Code); err != nil {
		s.error(w, r, err)
		return
	}
	month, err := broadcast.ParseMonth(f["month"])
	if err != nil {
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "month", "%v", err))
		return
	}
	if f["title"] == "" || utf8.RuneCountInString(f["title"]) > 300 {
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "title", "a programme needs a title of 1-300 characters"))
		return
	}
	// Circular 39/2020's levels: 0 normal, 1 priority; 2 (emergency) goes
	// through POST /api/v1/emergency, which plays at once.
	priority := broadcast.PriorityNormal
	switch f["priority"] {
	case "", "0", "normal":
	case "1", "priority":
		priority = broadcast.PriorityHigh
	default:
		s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "priority", "priority %q must be 0 (normal) or 1 (priority); emergencies go to /api/v1/emergency", f["priority"]))
		return
	}
	a, err := s.storeAudio(u)
	if err != nil {
		s.error(w, r, err)
		return
	}
	now := s.opts.Now()
	p := broadcast.Programme{
		ID: broadcast.NewID(now), Unit: unit.Code, UnitPath: unit.Path, Month: month,
		Title: broadcast.NFC(f["title"]), Description: broadcast.NFC(f["description"]), Audio: a, Priority: priority,
		Status: broadcast.ProgrammeDraft, UploadedBy: tok.ID, UploaderName: tok.Name, CreatedAt: now,
	}
	detail, _ := json.Marshal(map[string]any{"unit": p.Unit, "month": p.Month, "title": p.Title, "sha256": a.SHA256, "duration_ms": a.DurationMS})
	op := &broadcast.OpEntry{At: now, Actor: actor(tok), Action: "programme.upload", Subject: p.ID, Detail: detail, Unit: p.UnitPath}
	if err := s.opts.Store.CreateProgramme(r.Context(), p, op); err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, s.programmeView(p))
}

// programmeJSON flattens the audio facts into the programme, as docs/api.md lists
// them (sha256, size, duration_ms, format).
type programmeJSON struct {
	broadcast.Programme
	UnitName   string `json:"unit_name,omitempty"`
	SHA256     string `json:"sha256"`
	Size       int64  `json:"size"`
	DurationMS int64  `json:"duration_ms"`
	Format     string `json:"format"`
}

// programmeView is a programme as the API answers it, with its unit's name
// for people (a unit the tree no longer has is shown by its code alone).
func (s *Server) programmeView(p broadcast.Programme) programmeJSON {
	v := programmeJSON{Programme: p, SHA256: p.Audio.SHA256, Size: p.Audio.Size, DurationMS: p.Audio.DurationMS, Format: p.Audio.Format}
	if u, err := s.opts.Store.Unit(p.Unit); err == nil {
		v.UnitName = u.Name
	}
	return v
}

func (s *Server) listProgrammes(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	q := r.URL.Query()
	_, path, err := s.unitParam(r, tok)
	if err != nil {
		s.error(w, r, err)
		return
	}
	var month broadcast.Month
	if m := q.Get("month"); m != "" {
		if month, err = broadcast.ParseMonth(m); err != nil {
			s.error(w, r, broadcast.FieldError(broadcast.EInvalid, "month", "%v", err))
			return
		}
	}
	ps, err := s.opts.Store.Programmes(path, month)
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := make([]programmeJSON, len(ps))
	for i, p := range ps {
		out[i] = s.programmeView(p)
	}
	writeJSON(w, http.StatusOK, map[string]any{"programmes": out})
}

func (s *Server) programme(w http.ResponseWriter, r *http.Request, tok broadcast.Token) (broadcast.Programme, bool) {
	p, err := s.opts.Store.Programme(r.PathValue("id"))
	if err == nil {
		err = scope(tok, p.UnitPath, "programme "+p.ID)
	}
	if err != nil {
		s.error(w, r, err)
		return p, false
	}
	return p, true
}

func (s *Server) getProgramme(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	if p, ok := s.programme(w, r, tok); ok {
		writeJSON(w, http.StatusOK, s.programmeView(p))
	}
}

type approveResponse struct {
	programmeJSON
	Plan scheduler.PlanResult `json:"plan"`
}

func (s *Server) approveProgramme(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	p, ok := s.programme(w, r, tok)
	if !ok {
		return
	}
	now := s.opts.Now()
	op := &broadcast.OpEntry{At: now, Actor: actor(tok), Action: "programme.approve", Subject: p.ID, Unit: p.UnitPath}
	p, err := s.opts.Store.UpdateProgramme(r.Context(), p.ID, func(p *broadcast.Programme) error {
		switch {
		case p.Status != broadcast.ProgrammeDraft:
			return broadcast.Errorf(broadcast.EConflict, "programme %s is %s; only a draft can be approved", p.ID, p.Status)
		case p.UploadedBy == tok.ID && !s.opts.Policy.SelfApproval:
			return broadcast.Errorf(broadcast.EForbidden, "a programme must be approved by someone other than its uploader (policy.self_approval is off)")
		}
		p.Status, p.ApprovedBy, p.ApproverName, p.ApprovedAt = broadcast.ProgrammeApproved, tok.ID, tok.Name, now
		return nil
	}, op)
	if err != nil {
		s.error(w, r, err)
		return
	}
	// Planning after the approval has committed: should it fail half-way,
	// approving again is refused, but planning is idempotent and is redone
	// by the scheduler's housekeeping; nothing is planned twice.
	plan, err := s.opts.Planner.PlanProgramme(r.Context(), p, actor(tok))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, approveResponse{programmeJSON: s.programmeView(p), Plan: plan})
}

func (s *Server) withdrawProgramme(w http.ResponseWriter, r *http.Request, tok broadcast.Token) {
	p, ok := s.programme(w, r, tok)
	if !ok {
		return
	}
	now := s.opts.Now()
	op := &broadcast.OpEntry{At: now, Actor: actor(tok), Action: "programme.withdraw", Subject: p.ID, Unit: p.UnitPath}
	p, err := s.opts.Store.UpdateProgramme(r.Context(), p.ID, func(p *broadcast.Programme) error {
		if p.Status == broadcast.ProgrammeWithdrawn {
			return broadcast.Errorf(broadcast.EConflict, "programme %s is already withdrawn", p.ID)
		}
		p.Status, p.WithdrawnAt = broadcast.ProgrammeWithdrawn, now
		return nil
	}, op)
	if err != nil {
		s.error(w, r, err)
		return
	}
	airings, err := s.opts.Store.ProgrammeAirings(p.ID)
	if err != nil {
		s.error(w, r, err)
		return
	}
	cancelled, stations := 0, map[string]bool{}
	for _, a := range airings {
		if a.Status.Final() || !a.Start.After(now) {
			continue
		}
		_, err := s.opts.Store.UpdateAiring(r.Context(), a.ID, func(a *broadcast.Airing) error {
			if !a.Status.Final() {
				a.Cancel(now, "withdrawn")
			}
			return nil
		}, nil)
		if err != nil {
			s.error(w, r, err)
			return
		}
		cancelled++
		stations[a.Station] = true
	}
	for st := range stations {
		s.opts.Planner.Touch(st)
	}
	writeJSON(w, http.StatusOK, map[string]any{"programme": s.programmeView(p), "airings_cancelled": cancelled})
}
