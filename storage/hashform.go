package storage

import (
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

// initHashForms reads the switch-over, or sets and records it.
func (s *Store) initHashForms(tx *bolt.Tx) error {
	meta := tx.Bucket(bktMeta)
	if v := meta.Get(metaHashForms); v != nil {
		if err := json.Unmarshal(v, &s.forms); err != nil || s.forms.AsRunFrom == 0 || s.forms.OplogFrom == 0 {
			return fmt.Errorf("hash forms %q in the meta bucket: not a switch-over (%v)", v, err)
		}
		return nil
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
