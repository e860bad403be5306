package storage

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/loaxa/loaxa/broadcast"
)

func TestProgrammes(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	seedStations(t, s, 1)
	base := opsSeq(t, s)

	noBlob := broadcast.Programme{ID: "p0", UnitPath: "38/380", Month: "2026-03", Audio: broadcast.Audio{SHA256: strings.Repeat("1", 64)}}
	if err := s.CreateProgramme(ctx, noBlob, &broadcast.OpEntry{Action: "programme.upload"}); broadcast.ErrorCode(err) != broadcast.EInvalid {
		t.Errorf("programme without blob: %v", err)
	}
	if seq, _, _ := s.OpsHead(); seq != base {
		t.Errorf("refused programme was logged")
	}

	p1 := seedProgramme(t, s, "p1")
	if err := s.CreateProgramme(ctx, p1, nil); broadcast.ErrorCode(err) != broadcast.EConflict {
		t.Errorf("duplicate programme: %v", err)
	}
	sha, _, err := s.PutBlob(strings.NewReader("province audio"))
	must(t, err)
	prov := broadcast.Programme{ID: "p2", Unit: "38", UnitPath: "38", Month: "2026-04", Audio: broadcast.Audio{SHA256: sha}}
	must(t, s.CreateProgramme(ctx, prov, &broadcast.OpEntry{Actor: "tok1", Action: "programme.upload", Subject: "p2"}))
	comm := broadcast.Programme{ID: "p3", Unit: "38101", UnitPath: "38/381/38101", Month: "2026-03", Audio: broadcast.Audio{SHA256: sha}}
	must(t, s.CreateProgramme(ctx, comm, nil))

	got, err := s.Programme("p1")
	must(t, err)
	if got.Title != p1.Title || !got.CreatedAt.Equal(t0) {
		t.Errorf("Programme(p1) = %+v", got)
	}
	if _, err := s.Programme("nope"); !broadcast.IsNotFound(err) {
		t.Errorf("Programme(nope): %v", err)
	}
	for _, c := range []struct {
		path  string
		month broadcast.Month
		want  string
	}{
		{"", "", "p1,p3,p2"},
		{"", "2026-03", "p1,p3"},
		{"38", "", "p1,p3,p2"},
		{"38/380", "", "p1"},
		{"38/381", "2026-03", "p3"},
		{"38/381", "2026-04", ""},
		{"", "2026-05", ""},
	} {
		ps, err := s.Programmes(c.path, c.month)
		must(t, err)
		var ids []string
		for _, p := range ps {
			ids = append(ids, p.ID)
		}
		if strings.Join(ids, ",") != c.want {
			t.Errorf("Programmes(%q, %q) = %v, want %s", c.path, c.month, ids, c.want)
		}
	}

	// fn's error: no change, no op entry, the error as is.
	head, _, _ := s.OpsHead()
	boom := errors.New("self-approval is not allowed")
	_, err = s.UpdateProgramme(ctx, "p1", func(p *broadcast.Programme) error {
		p.Status = broadcast.ProgrammeApproved
		return boom
	}, &broadcast.OpEntry{Action: "programme.approve", Subject: "p1"})
	if err != boom {
		t.Errorf("UpdateProgramme returned %v, want fn's error as is", err)
	}
	if got, _ := s.Programme("p1"); got.Status != broadcast.ProgrammeDraft {
		t.Errorf("aborted update changed status to %s", got.Status)
	}
	if h, _, _ := s.OpsHead(); h != head {
		t.Errorf("aborted update was logged")
	}

	// A successful update, with its op entry in the same transaction.
	op := &broadcast.OpEntry{Actor: "tok2 bob", Action: "programme.approve", Subject: "p1"}
	up, err := s.UpdateProgramme(ctx, "p1", func(p *broadcast.Programme) error {
		p.Status, p.ApprovedBy, p.ApprovedAt, p.Month = broadcast.ProgrammeApproved, "tok2", t0, "2026-04"
		return nil
	}, op)
	must(t, err)
	if up.Status != broadcast.ProgrammeApproved || op.Seq != head+1 {
		t.Errorf("update: %+v, op %+v", up, op)
	}
	// Moved to another month: re-indexed.
	if ps, _ := s.Programmes("", "2026-03"); len(ps) != 1 || ps[0].ID != "p3" {
		t.Errorf("after moving p1, March has %v", ps)
	}
	if ps, _ := s.Programmes("", "2026-04"); len(ps) != 2 {
		t.Errorf("after moving p1, April has %d", len(ps))
	}
	if _, err := s.UpdateProgramme(ctx, "p1", func(p *broadcast.Programme) error { p.Audio.SHA256 = strings.Repeat("2", 64); return nil }, nil); broadcast.ErrorCode(err) != broadcast.EInvalid {
		t.Errorf("update to a missing blob: %v", err)
	}
	if _, err := s.UpdateProgramme(ctx, "p1", func(p *broadcast.Programme) error { p.ID = "other"; return nil }, nil); broadcast.ErrorCode(err) != broadcast.EInvalid {
		t.Errorf("changing the id: %v", err)
	}
	if _, err := s.UpdateProgramme(ctx, "nope", func(*broadcast.Programme) error { return nil }, nil); !broadcast.IsNotFound(err) {
		t.Errorf("update of a missing programme: %v", err)
	}
	verifyOps(t, s, op.Seq)
}
