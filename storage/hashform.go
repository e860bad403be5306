package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

// metaHashForms is where the logs switch to broadcast.HashForm2: JSON
// broadcast.HashForms. It is written once, when a file is first opened by a
// loaxad that knows the second form, and recorded in the operations log in
// the same transaction (broadcast.ActionHashForms): an older file switches
// at the next entry of each log, so that the entries already chained keep
// their hashes. A fresh file (both logs empty) is in the second form from
// entry 1: nothing switches over, and nothing is recorded, so that a fresh
// operations log still begins with what an operator did.
var metaHashForms = []byte("hash_forms")

// loadHashForms reads the switch-over, if the file has one, before the
// schema's migrations run: an operation they log must be hashed in the form
// the file gives its seq.
func (s *Store) loadHashForms(tx *bolt.Tx) error {
	v := tx.Bucket(bktMeta).Get(metaHashForms)
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(v, &s.forms); err != nil || s.forms.AsRunFrom == 0 || s.forms.OplogFrom == 0 {
		return fmt.Errorf("hash forms %q in the meta bucket: not a switch-over (%v)", v, err)
	}
	return nil
}

// initHashForms sets and records the switch-over, unless the file has one
// (loadHashForms read it); it runs after the migrations, whose operations
// are chained in the form the file had.
func (s *Store) initHashForms(tx *bolt.Tx) error {
	if err := initFiguresKey(tx); err != nil {
		return err
	}
	meta := tx.Bucket(bktMeta)
	if meta.Get(metaHashForms) != nil {
		return s.loadHashForms(tx)
	}
	asrunSeq, _, err := asRunHead(tx.Bucket(bktAsRun))
	if err != nil {
		return fmt.Errorf("hash forms: %w", err)
	}
	opSeq, _, err := opsHead(tx.Bucket(bktOps))
	if err != nil {
		return fmt.Errorf("hash forms: %w", err)
	}
	// The operations entry that records the switch is the first of its
	// log in the second form.
	s.forms = broadcast.HashForms{AsRunFrom: asrunSeq + 1, OplogFrom: opSeq + 1}
	detail, err := json.Marshal(s.forms)
	if err != nil {
		return fmt.Errorf("hash forms: %w", err)
	}
	if err := meta.Put(metaHashForms, detail); err != nil {
		return fmt.Errorf("hash forms: %w", err)
	}
	if base, _ := asRunBase(tx); asrunSeq == 0 && opSeq == 0 && base == 0 {
		return nil
	}
	op, err := s.appendOp(tx, broadcast.OpEntry{Actor: "system", Action: broadcast.ActionHashForms, Subject: "asrun,oplog", Detail: detail})
	if err != nil {
		return fmt.Errorf("record the hash forms: %w", err)
	}
	s.log.Info("the logs chain entries' content hashes from here on", "asrun_from", s.forms.AsRunFrom, "oplog_from", s.forms.OplogFrom, "op", op.Seq)
	return nil
}

// HashForms returns where the logs switched to broadcast.HashForm2.
func (s *Store) HashForms() (broadcast.HashForms, error) { return s.forms, nil }

// metaFiguresKey is the key of the salts of sealed figures (audit.FigureSalt):
// 32 random bytes made when the file is first opened, never shown. A
// bundle gives the salts of its own stations' figures and only the salted
// hashes of the others', which their few possible values cannot be tried
// against without it.
var metaFiguresKey = []byte("figures_key")

// sealedFiguresPrefix + month is the JSON of a sealed month's figures, with
// their salts, as the seal (an operations-log entry) hashes them.
const sealedFiguresPrefix = "sealed_figures/"

func initFiguresKey(tx *bolt.Tx) error {
	meta := tx.Bucket(bktMeta)
	if len(meta.Get(metaFiguresKey)) == 32 {
		return nil
	}
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return fmt.Errorf("figures key: %w", err)
	}
	return meta.Put(metaFiguresKey, k[:])
}

// FiguresKey returns the key of the sealed figures' salts.
func (s *Store) FiguresKey() ([]byte, error) {
	var k []byte
	err := s.view(func(tx *bolt.Tx) error {
		k = bytes.Clone(tx.Bucket(bktMeta).Get(metaFiguresKey))
		return nil
	})
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("figures key: %d bytes, %v", len(k), err)
	}
	return k, nil
}

// AppendSeal appends a seal's operations-log entry and keeps the month's
// sealed figures (JSON) beside it, in one transaction.
func (s *Store) AppendSeal(ctx context.Context, op broadcast.OpEntry, month broadcast.Month, figures []byte) (broadcast.OpEntry, error) {
	if err := ctx.Err(); err != nil {
		return op, err
	}
	var logged broadcast.OpEntry
	err := s.db.Update(func(tx *bolt.Tx) error {
		s.gen.Add(1) // as in update: the writer's cache is for it alone
		var err error
		if logged, err = s.appendOp(tx, op); err != nil {
			return err
		}
		return tx.Bucket(bktMeta).Put([]byte(sealedFiguresPrefix+string(month)), figures)
	})
	if err != nil {
		return op, fmt.Errorf("seal %s: %w", month, s.dbErr(err))
	}
	return logged, nil
}

// SealedFigures returns the figures kept with month's seal (nil: none).
func (s *Store) SealedFigures(month broadcast.Month) ([]byte, error) {
	var v []byte
	err := s.view(func(tx *bolt.Tx) error {
		v = bytes.Clone(tx.Bucket(bktMeta).Get([]byte(sealedFiguresPrefix + string(month))))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sealed figures of %s: %w", month, err)
	}
	return v, nil
}
