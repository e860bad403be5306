package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

func TestOpenCreatesLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "state")
	s := mustOpenDir(t, dir)
	if s.Dir() != dir {
		t.Errorf("Dir() = %q, want %q", s.Dir(), dir)
	}
	for _, p := range []string{DBFile, "blobs"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	must(t, s.Close())
	must(t, s.Close()) // idempotent
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	mustOpenDir(t, dir)
	start := time.Now()
	_, err := Open(dir, Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	want := "open " + filepath.Join(dir, DBFile) + ": another process holds the lock (is loaxad already running?)"
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q does not start with %q", err, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Open waited %s despite a 100ms timeout", d)
	}
}

func TestSchemaVersion(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenDir(t, dir)
	must(t, s.Close())

	// A newer loaxad wrote the file.
	db, err := bolt.Open(filepath.Join(dir, DBFile), 0o600, &bolt.Options{Timeout: time.Second})
	must(t, err)
	must(t, db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bktMeta).Put([]byte("schema"), []byte(fmt.Sprint(SchemaVersion+1)))
	}))
	must(t, db.Close())

	_, err = Open(dir, Options{})
	if !errors.Is(err, ErrSchema) {
		t.Fatalf("Open of a newer schema: %v, want ErrSchema", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("schema version %d", SchemaVersion+1)) {
		t.Errorf("error does not name the version: %v", err)
	}

	// The refused Open released the lock and changed nothing.
	db, err = bolt.Open(filepath.Join(dir, DBFile), 0o600, &bolt.Options{Timeout: time.Second})
	must(t, err)
	must(t, db.View(func(tx *bolt.Tx) error {
		if v := string(tx.Bucket(bktMeta).Get([]byte("schema"))); v != fmt.Sprint(SchemaVersion+1) {
			t.Errorf("schema became %q", v)
		}
		return nil
	}))
	must(t, db.Close())
}

func TestSchemaVersionWritten(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenDir(t, dir)
	must(t, s.view(func(tx *bolt.Tx) error {
		if v := string(tx.Bucket(bktMeta).Get([]byte("schema"))); v != fmt.Sprint(SchemaVersion) {
			t.Errorf("schema = %q", v)
		}
		return nil
	}))
}

func TestClosed(t *testing.T) {
	s := mustOpen(t)
	must(t, s.Close())
	if _, err := s.AppendEvent(context.Background(), EventRecord{}); !errors.Is(err, ErrClosed) {
		t.Errorf("AppendEvent after Close: %v", err)
	}
	if _, err := s.Unit("38"); !errors.Is(err, ErrClosed) {
		t.Errorf("Unit after Close: %v", err)
	}
	if _, err := s.NextSnapshotRev(context.Background(), "d1"); !errors.Is(err, ErrClosed) {
		t.Errorf("NextSnapshotRev after Close: %v", err)
	}
}

func TestOps(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenDir(t, dir)
	ctx := context.Background()
	seq, head, err := s.OpsHead()
	must(t, err)
	if seq != 0 || !head.IsZero() {
		t.Fatalf("empty log head %d %s", seq, head)
	}
	var logged []broadcast.OpEntry
	for i := range chunk + 100 { // more than one read chunk
		op, err := s.AppendOp(ctx, broadcast.OpEntry{Actor: "tok1 alice", Action: "emergency.send", Subject: fmt.Sprint(i), Detail: []byte(`{"n":1}`)})
		must(t, err)
		logged = append(logged, op)
	}
	if _, err := s.AppendOp(ctx, broadcast.OpEntry{Actor: "x"}); broadcast.ErrorCode(err) != broadcast.EInvalid {
		t.Errorf("op without action: %v", err)
	}
	if logged[0].Seq != 1 || !logged[0].At.Equal(t0) || !logged[0].PrevHash.IsZero() {
		t.Errorf("first op %+v", logged[0])
	}
	must(t, s.Close())

	s = mustOpenDir(t, dir)
	verifyOps(t, s, chunk+100)
	var got []broadcast.OpEntry
	must(t, s.Ops(chunk+90, func(op broadcast.OpEntry) error { got = append(got, op); return nil }))
	if len(got) != 10 || got[0].Seq != chunk+91 || got[9].Hash != logged[chunk+99].Hash {
		t.Errorf("Ops(chunk+90) gave %d entries", len(got))
	}
	stop := errors.New("stop")
	n := 0
	if err := s.Ops(0, func(broadcast.OpEntry) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("Ops with a failing fn: %v after %d", err, n)
	}
}

// opsSeq is the operations log's last entry: seeding a store logs the
// records it writes, so tests count their own entries from it.
func opsSeq(t *testing.T, s *Store) uint64 {
	t.Helper()
	seq, _, err := s.OpsHead()
	must(t, err)
	return seq
}

// verifyOps recomputes the operations log's chain.
func verifyOps(t *testing.T, s *Store, want uint64) {
	t.Helper()
	var prev broadcast.Hash
	var n uint64
	must(t, s.Ops(0, func(op broadcast.OpEntry) error {
		n++
		if op.Seq != n || op.PrevHash != prev || op.ChainHashIn(s.forms) != op.Hash {
			return fmt.Errorf("op %d does not verify", op.Seq)
		}
		prev = op.Hash
		return nil
	}))
	seq, head, err := s.OpsHead()
	must(t, err)
	if n != want || seq != want || head != prev {
		t.Fatalf("ops log: %d entries, head %d %s, want %d", n, seq, head, want)
	}
}
