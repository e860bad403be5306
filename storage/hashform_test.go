package storage

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/loaxa/loaxa/audit"
	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

// A fresh file chains content hashes from entry 1 and records nothing; a
// file written before the second form switches at its next entries, records
// the switch once in the operations log, and verifies across it: the older
// entries keep their first-form hashes.
func TestHashFormSwitchOver(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenDir(t, dir)
	ctx := context.Background()
	if f, _ := s.HashForms(); f != (broadcast.HashForms{AsRunFrom: 1, OplogFrom: 1}) {
		t.Fatalf("fresh file: hash forms %+v, want both from 1", f)
	}
	if seq, _, _ := s.OpsHead(); seq != 0 {
		t.Fatalf("a fresh file's switch-over was logged: ops head %d", seq)
	}
	// Make it a file of an older loaxad: no switch-over, the first form.
	must(t, s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bktMeta).Delete(metaHashForms) }))
	s.forms = broadcast.HashForms{}
	devs, _ := seedAiring(t, s, 1) // logs operations in the first form
	for seq := uint64(1); seq <= 3; seq++ {
		_, err := s.AppendEvent(ctx, event(t, devs[0], "38001", "a1", seq, broadcast.EventReceived))
		must(t, err)
	}
	oldOps, _, _ := s.OpsHead()
	must(t, s.Close())

	s = mustOpenDir(t, dir)
	want := broadcast.HashForms{AsRunFrom: 4, OplogFrom: oldOps + 1}
	if f, _ := s.HashForms(); f != want {
		t.Fatalf("older file: hash forms %+v, want %+v", f, want)
	}
	var rec broadcast.OpEntry
	must(t, s.Ops(oldOps, func(o broadcast.OpEntry) error { rec = o; return nil }))
	var logged broadcast.HashForms
	if rec.Action != broadcast.ActionHashForms || json.Unmarshal(rec.Detail, &logged) != nil || logged != want {
		t.Fatalf("the switch-over is not recorded as operation %d: %+v", oldOps+1, rec)
	}
	for seq := uint64(4); seq <= 5; seq++ {
		app, err := s.AppendEvent(ctx, event(t, devs[0], "38001", "a1", seq, broadcast.EventReceived))
		must(t, err)
		e := app.Entry
		if e.Hash != broadcast.ChainHash2(e.PrevHash, e.Seq, e.ReceivedAt, e.ContentHash()) || e.Hash == e.ChainHash() {
			t.Fatalf("entry %d after the switch-over is not in the second form", e.Seq)
		}
	}
	must(t, s.AsRun(0, func(e broadcast.AsRunEntry) error {
		if e.Seq < 4 && e.Hash != e.ChainHash() {
			t.Errorf("entry %d before the switch-over changed form", e.Seq)
		}
		return nil
	}))
	res, err := audit.VerifyLogs(ctx, s, 0)
	must(t, err)
	if !res.OK || res.Entries != 5 {
		t.Fatalf("verify across the switch-over: %+v", res)
	}
	must(t, s.Close())
	// Reopened, the recorded switch-over stands and nothing more is logged.
	s = mustOpenDir(t, dir)
	if f, _ := s.HashForms(); f != want {
		t.Fatalf("reopened: hash forms %+v, want %+v", f, want)
	}
	if seq, _, _ := s.OpsHead(); seq != oldOps+1 {
		t.Fatalf("reopened: ops head %d, want %d", seq, oldOps+1)
	}
	// A verifier that ignores the switch-over finds the newer entries altered.
	s.forms = broadcast.HashForms{}
	if res, _ := audit.VerifyLogs(ctx, s, 0); res.OK {
		t.Fatal("verify with the first form throughout passed: the second form is not what the newer entries use")
	}
}
