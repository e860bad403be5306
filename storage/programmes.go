package storage

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

func (s *Store) putProgramme(tx *bolt.Tx, p broadcast.Programme) error {
	p.Title, p.Description = broadcast.NFC(p.Title), broadcast.NFC(p.Description)
	v, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode programme %s: %w", p.ID, err)
	}
	if err := tx.Bucket(bktProgrammes).Put([]byte(p.ID), v); err != nil {
		return err
	}
	s.noteRecord(broadcast.RecordProgramme, p.ID, broadcast.HashRecord(broadcast.RecordProgramme, p.ID, v))
	return tx.Bucket(bktProgMonth).Put(key(string(p.Month), p.ID), nil)
}

func getProgramme(tx *bolt.Tx, id string) (broadcast.Programme, error) {
	var p broadcast.Programme
	v := tx.Bucket(bktProgrammes).Get([]byte(id))
	if v == nil {
		return p, notFound("programme", id)
	}
	if err := json.Unmarshal(v, &p); err != nil {
		return p, fmt.Errorf("decode programme %s: %w", id, err)
	}
	return p, nil
}

// CreateProgramme stores a new programme. Its audio must already be a blob
// (PutBlob): the blob is made durable before the record that names it
// commits, never the other way round, so that no committed programme names
// audio a crash lost.
func (s *Store) CreateProgramme(ctx context.Context, p broadcast.Programme, op *broadcast.OpEntry) error {
	if !broadcast.ValidID(p.ID) {
		return broadcast.FieldError(broadcast.EInvalid, "id", "programme id %q is not 1-64 characters of [A-Za-z0-9_-]", p.ID)
	}
	if !s.hasBlob(p.Audio.SHA256) {
		return broadcast.FieldError(broadcast.EInvalid, "audio.sha256", "programme %s names audio %q, which is not stored; upload the audio first", p.ID, p.Audio.SHA256)
	}
	if p.CreatedAt.IsZero() {
		p.CreatedAt = s.now()
	}
	err := s.update(ctx, op, func(tx *bolt.Tx) error {
		if tx.Bucket(bktProgrammes).Get([]byte(p.ID)) != nil {
			return broadcast.Errorf(broadcast.EConflict, "programme %s already exists", p.ID)
		}
		return s.putProgramme(tx, p)
	})
	if err != nil {
		return fmt.Errorf("create programme %s: %w", p.ID, err)
	}
	return nil
}

// Programme returns a programme.
func (s *Store) Programme(id string) (broadcast.Programme, error) {
	var p broadcast.Programme
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		p, err = getProgramme(tx, id)
		return err
	})
	if err != nil {
		return p, fmt.Errorf("programme %s: %w", id, err)
	}
	return p, nil
}

// Programmes returns the programmes of units at or below unitPath ("" for
// all) for a month ("" for any), sorted by month then id. A month is read
// from the month index; programmes are few (one a month per unit), so the
// unit filter is a scan of them.
func (s *Store) Programmes(unitPath string, month broadcast.Month) ([]broadcast.Programme, error) {
	var out []broadcast.Programme
	err := s.view(func(tx *bolt.Tx) error {
		prefix := []byte(nil)
		if month != "" {
			prefix = key(string(month), "")
		}
		return scan(tx.Bucket(bktProgMonth), prefix, func(k, _ []byte) error {
			p, err := getProgramme(tx, string(afterZero(k)))
			if err != nil {
				return err
			}
			if unitPath == "" || broadcast.Below(p.UnitPath, unitPath) {
				out = append(out, p)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("programmes of %q in %q: %w", unitPath, month, err)
	}
	return out, nil
}

// UpdateProgramme applies fn to a programme and stores the result in one
// transaction. An error from fn aborts the transaction (no change, no
// operations-log entry) and is returned as is. fn must not change the id; if
// it changes the audio, the new blob must be stored.
func (s *Store) UpdateProgramme(ctx context.Context, id string, fn func(*broadcast.Programme) error, op *broadcast.OpEntry) (broadcast.Programme, error) {
	var out broadcast.Programme
	var fnErr error
	err := s.update(ctx, op, func(tx *bolt.Tx) error {
		p, err := getProgramme(tx, id)
		if err != nil {
			return err
		}
		old := p
		if err := fn(&p); err != nil {
			fnErr = err
			return err
		}
		if p.ID != id {
			return broadcast.FieldError(broadcast.EInvalid, "id", "a programme's id cannot change (%s to %s)", id, p.ID)
		}
		if p.Audio.SHA256 != old.Audio.SHA256 && !s.hasBlob(p.Audio.SHA256) {
			return broadcast.FieldError(broadcast.EInvalid, "audio.sha256", "audio %q is not stored; upload it first", p.Audio.SHA256)
		}
		if old.Month != p.Month {
			if err := tx.Bucket(bktProgMonth).Delete(key(string(old.Month), id)); err != nil {
				return err
			}
		}
		p.Title, p.Description = broadcast.NFC(p.Title), broadcast.NFC(p.Description)
		out = p
		return s.putProgramme(tx, p)
	})
	if fnErr != nil && err == fnErr {
		return broadcast.Programme{}, fnErr
	}
	if err != nil {
		return broadcast.Programme{}, fmt.Errorf("update programme %s: %w", id, err)
	}
	return out, nil
}
