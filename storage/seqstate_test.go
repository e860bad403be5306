package storage

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

// openQuiet opens a store whose seq states are checkpointed only when the
// test says so (or at Close).
func openQuiet(tb testing.TB, dir string) *Store {
	tb.Helper()
	s, err := Open(dir, Options{Policy: broadcast.DefaultPolicy(), Now: func() time.Time { return t0 }, checkpointEvery: time.Hour})
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// crashImage copies the file as it is on disk after the last commit, as a
// crash would leave it: no checkpoint at Close.
func crashImage(tb testing.TB, s *Store) string {
	tb.Helper()
	dir := tb.TempDir()
	f, err := os.Create(filepath.Join(dir, DBFile))
	must(tb, err)
	must(tb, s.db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(f)
		return err
	}))
	must(tb, f.Close())
	return dir
}

// indexed lists the device's seqs in the asrun_dev index.
func indexed(tb testing.TB, s *Store, device string) []uint64 {
	tb.Helper()
	var out []uint64
	must(tb, s.db.View(func(tx *bolt.Tx) error {
		return scan(tx.Bucket(bktAsRunDev), key(device, ""), func(k, _ []byte) error {
			out = append(out, u64of(k[len(device)+1:]))
			return nil
		})
	}))
	return out
}

func u64of(b []byte) uint64 {
	var n uint64
	for _, c := range b {
		n = n<<8 | uint64(c)
	}
	return n
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// sendAll appends the device's events seqs, in order, and returns their
// entries by seq.
func sendAll(tb testing.TB, s *Store, device string, seqs []uint64) map[uint64]broadcast.AsRunEntry {
	tb.Helper()
	out := map[uint64]broadcast.AsRunEntry{}
	for _, seq := range seqs {
		app, err := s.AppendEvent(context.Background(), event(tb, device, "38001", "a1", seq, broadcast.EventReceived))
		must(tb, err)
		if app.Duplicate {
			tb.Fatalf("%s/%d: a duplicate", device, seq)
		}
		out[seq] = app.Entry
	}
	return out
}

// Duplicates of old seqs are found and answered with the first entry,
// whether the seq is pending in the device's state or already in the
// index; a crash between checkpoints loses none of it.
func TestSeqStatesAcrossCheckpointAndCrash(t *testing.T) {
	s := openQuiet(t, t.TempDir())
	ctx := context.Background()
	devs, _ := seedAiring(t, s, 3)
	d0, d1, d2 := devs[0], devs[1], devs[2]

	first := sendAll(t, s, d0, seqRange(1, 40))
	if got := indexed(t, s, d0); len(got) != 0 {
		t.Errorf("indexed before a checkpoint: %v", got)
	}
	s.checkpoint()
	if got := indexed(t, s, d0); !reflect.DeepEqual(got, seqRange(1, 40)) {
		t.Errorf("indexed after a checkpoint: %v", got)
	}
	if s.Stats().Checkpoints != 1 {
		t.Errorf("stats %+v", s.Stats())
	}
	for k, v := range sendAll(t, s, d0, seqRange(41, 45)) {
		first[k] = v
	}
	sendAll(t, s, d1, []uint64{2, 3, 5})
	sendAll(t, s, d2, seqRange(1, 3))
	s.checkpoint()
	if got := indexed(t, s, d0); len(got) != 40 {
		t.Errorf("5 pending seqs were indexed: %v", got)
	}
	sendAll(t, s, d2, []uint64{4})

	img := crashImage(t, s)
	want := map[string]DeviceSeqState{}
	for _, d := range devs {
		st, err := s.DeviceSeq(d)
		must(t, err)
		want[d] = st
	}
	if want[d0].Upto != 45 || want[d0].UptoHash != first[45].Hash || want[d1].Upto != 0 || want[d1].Max != 5 || want[d2].Upto != 4 {
		t.Fatalf("states %+v", want)
	}
	must(t, s.Close())

	for name, dir := range map[string]string{"crash image": img, "after Close": s.Dir()} {
		t.Run(name, func(t *testing.T) {
			s := openQuiet(t, dir)
			for _, d := range devs {
				st, err := s.DeviceSeq(d)
				must(t, err)
				if st != want[d] {
					t.Errorf("%s: %+v, want %+v", d, st, want[d])
				}
			}
			// Old (indexed) and recent (pending) duplicates, and a seq
			// reused by another event: the first entry in each case.
			for _, seq := range []uint64{1, 10, 40, 41, 45} {
				app, err := s.AppendEvent(ctx, event(t, d0, "38001", "a1", seq, broadcast.EventReceived))
				must(t, err)
				if !app.Duplicate || app.Entry.Hash != first[seq].Hash || app.UptoSeq != 45 || app.UptoHash != first[45].Hash {
					t.Errorf("%s/%d again: %+v", d0, seq, app)
				}
			}
			reused := event(t, d0, "38001", "a1", 7, broadcast.EventStarted)
			reused.Event.ID = "another"
			reused.Payload, _ = broadcast.SignEvent(reused.Event, nil)
			app, err := s.AppendEvent(ctx, reused)
			must(t, err)
			if prev, _, err := broadcast.DecodeEvent(app.Entry.Payload); !app.Duplicate || err != nil || prev.ID != "e7" {
				t.Errorf("reused seq: %+v (%v)", app, err)
			}
			// The gap of d1 fills from where the log left it.
			app, err = s.AppendEvent(ctx, event(t, d1, "38001", "a1", 1, broadcast.EventReceived))
			must(t, err)
			if app.Duplicate || app.UptoSeq != 3 {
				t.Errorf("d1/1: %+v", app)
			}
			st, _ := s.DeviceSeq(d1)
			if st.Upto != 3 || st.Max != 5 || st.UptoHash == (broadcast.Hash{}) {
				t.Errorf("d1 after 1: %+v", st)
			}
			app, err = s.AppendEvent(ctx, event(t, d1, "38001", "a1", 4, broadcast.EventReceived))
			must(t, err)
			if app.UptoSeq != 5 {
				t.Errorf("d1/4: %+v", app)
			}
			if app, _ := s.AppendEvent(ctx, event(t, d2, "38001", "a1", 4, broadcast.EventReceived)); !app.Duplicate {
				t.Errorf("d2/4, logged after the last checkpoint, is new again")
			}
			verifyChain(t, s)
		})
	}
}

// A gap that stays open while many seqs arrive after it: the early seqs
// go to the index like any others, and the late one walks over them.
func TestLongGap(t *testing.T) {
	s := openQuiet(t, t.TempDir())
	devs, _ := seedAiring(t, s, 1)
	d := devs[0]
	got := sendAll(t, s, d, seqRange(2, 50))
	s.checkpoint()
	for k, v := range sendAll(t, s, d, seqRange(51, 80)) {
		got[k] = v
	}
	if n := len(indexed(t, s, d)); n != 49 {
		t.Errorf("%d indexed", n)
	}
	if st, _ := s.DeviceSeq(d); st.Upto != 0 || st.Max != 80 || !st.UptoHash.IsZero() {
		t.Errorf("before the gap fills: %+v", st)
	}
	for _, seq := range []uint64{2, 50, 51, 80} {
		if app, _ := s.AppendEvent(context.Background(), event(t, d, "38001", "a1", seq, broadcast.EventReceived)); !app.Duplicate || app.UptoSeq != 0 || app.Entry.Hash != got[seq].Hash {
			t.Errorf("%d again: %+v", seq, app)
		}
	}
	app, err := s.AppendEvent(context.Background(), event(t, d, "38001", "a1", 1, broadcast.EventReceived))
	must(t, err)
	if app.Duplicate || app.UptoSeq != 80 || app.UptoHash != got[80].Hash {
		t.Errorf("the gap filled: %+v", app)
	}
	if st, _ := s.DeviceSeq(d); st.Upto != 80 || st.UptoHash != got[80].Hash {
		t.Errorf("after the gap filled: %+v", st)
	}
}

// A failed group commit may have changed seq states in memory: they are
// rebuilt from the file, and the retried requests are judged against it.
func TestFailedCommitRebuildsSeqStates(t *testing.T) {
	s := openQuiet(t, t.TempDir())
	devs, _ := seedAiring(t, s, 2)
	sendAll(t, s, devs[0], seqRange(1, 3))
	must(t, s.db.Update(func(tx *boltTx) error {
		return tx.Bucket(bktSnapRev).Put([]byte("bad"), []byte("x"))
	}))
	batch := []*request{
		{rec: event(t, devs[0], "38001", "a1", 4, broadcast.EventReceived)},
		{rec: event(t, devs[1], "38001", "a1", 2, broadcast.EventReceived)},
		{rev: "bad"},
		{rec: event(t, devs[0], "38001", "a1", 5, broadcast.EventReceived)},
		{rec: event(t, devs[0], "38001", "a1", 4, broadcast.EventReceived)},
	}
	for _, r := range batch {
		r.reply = make(chan result, 1)
	}
	s.commit(batch)
	var res []result
	for _, r := range batch {
		res = append(res, <-r.reply)
	}
	if res[0].app.Duplicate || res[3].app.Duplicate || !res[4].app.Duplicate || res[4].app.Entry.Hash != res[0].app.Entry.Hash || res[2].err == nil {
		t.Errorf("results %+v", res)
	}
	if st, _ := s.DeviceSeq(devs[0]); st.Upto != 5 {
		t.Errorf("d0 %+v", st)
	}
	if st, _ := s.DeviceSeq(devs[1]); st.Upto != 0 || st.Max != 2 {
		t.Errorf("d1 %+v", st)
	}
	if n := verifyChain(t, s); n != 6 {
		t.Errorf("%d entries", n)
	}
	// The airing as cached by the failed transaction is not what is kept.
	a, err := s.Airing("a1")
	must(t, err)
	if n := len(a.Devices[devs[0]].Events); n != 5 {
		t.Errorf("d0 has %d event refs on the airing, want 5", n)
	}
}

func TestSeqStateCodec(t *testing.T) {
	var h broadcast.Hash
	h[0], h[31] = 1, 2
	for _, st := range []seqState{
		{},
		{DeviceSeqState: DeviceSeqState{Upto: 0, Max: 3, LastReceived: t0.UTC()}, pending: []seqPair{{2, 900}, {3, 17}}},
		{DeviceSeqState: DeviceSeqState{Upto: 1 << 40, Max: 1<<40 + 9, LastReceived: t0.Add(time.Nanosecond).UTC(), UptoHash: h},
			pending: []seqPair{{1<<40 - 1, 5_000_000}, {1 << 40, 4_000_000}, {1<<40 + 9, 6_000_001}}},
	} {
		var got seqState
		must(t, decodeSeqState(encodeSeqState(&st), &got))
		if len(st.pending) == 0 && len(got.pending) == 0 {
			got.pending = st.pending
		}
		if !reflect.DeepEqual(got, st) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, st)
		}
	}
	good := encodeSeqState(&seqState{DeviceSeqState: DeviceSeqState{Upto: 5, Max: 5, UptoHash: h}, pending: []seqPair{{5, 9}}})
	for i := range len(good) {
		var st seqState
		if err := decodeSeqState(good[:i], &st); err == nil {
			t.Errorf("truncated to %d bytes: no error", i)
		}
	}
	var st seqState
	if err := decodeSeqState(append(bytes.Clone(good), 0), &st); err == nil {
		t.Error("trailing byte: no error")
	}
}

// A schema 1 file: each device's state beside its index entries in
// asrun_dev, every event indexed. Open moves the states and the log goes on.
func TestMigrateSchema1(t *testing.T) {
	dir := t.TempDir()
	s := openQuiet(t, dir)
	devs, _ := seedAiring(t, s, 3)
	first := sendAll(t, s, devs[0], seqRange(1, 5))
	sendAll(t, s, devs[1], []uint64{2, 3})
	want := map[string]DeviceSeqState{}
	for _, d := range devs {
		want[d], _ = s.DeviceSeq(d)
	}
	must(t, s.Close())

	// Rewrite the file as schema 1 would have left it.
	db, err := bolt.Open(filepath.Join(dir, DBFile), 0o600, &bolt.Options{Timeout: time.Second})
	must(t, err)
	must(t, db.Update(func(tx *bolt.Tx) error {
		idx := tx.Bucket(bktAsRunDev)
		err := tx.Bucket(bktAsRun).ForEach(func(k, v []byte) error {
			e, err := decodeEntryHead(v)
			if err != nil {
				return err
			}
			return idx.Put(devSeqKey(e.Device, e.DeviceSeq), bytes.Clone(k))
		})
		if err != nil {
			return err
		}
		for _, d := range devs {
			st := want[d]
			if st.Max == 0 {
				continue
			}
			v := append(u64(st.Upto), u64(st.Max)...)
			v = append(v, u64(uint64(st.LastReceived.UnixNano()))...)
			v = append(v, st.UptoHash[:]...)
			if err := idx.Put(v1StateKey(d), v); err != nil {
				return err
			}
		}
		if err := tx.DeleteBucket(bktAsRunSeq); err != nil {
			return err
		}
		if err := tx.Bucket(bktMeta).Delete(metaSeqAt); err != nil {
			return err
		}
		return tx.Bucket(bktMeta).Put([]byte("schema"), []byte("1"))
	}))
	must(t, db.Close())

	s = openQuiet(t, dir)
	for _, d := range devs {
		if st, err := s.DeviceSeq(d); err != nil || st != want[d] {
			t.Errorf("%s: %+v %v, want %+v", d, st, err, want[d])
		}
	}
	must(t, s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bktMeta).Get([]byte("schema")); string(v) != strconv.Itoa(SchemaVersion) {
			t.Errorf("schema %q", v)
		}
		return tx.Bucket(bktAsRunDev).ForEach(func(k, _ []byte) error {
			if len(k) != len(devs[0])+9 {
				t.Errorf("left in asrun_dev: %q", k)
			}
			return nil
		})
	}))
	app, err := s.AppendEvent(context.Background(), event(t, devs[0], "38001", "a1", 3, broadcast.EventReceived))
	must(t, err)
	if !app.Duplicate || app.Entry.Hash != first[3].Hash {
		t.Errorf("duplicate after the upgrade: %+v", app)
	}
	app, err = s.AppendEvent(context.Background(), event(t, devs[1], "38001", "a1", 1, broadcast.EventReceived))
	must(t, err)
	if app.Duplicate || app.UptoSeq != 3 {
		t.Errorf("gap filled after the upgrade: %+v", app)
	}
	sendAll(t, s, devs[0], []uint64{6})
	verifyChain(t, s)
}

// The writer keeps airings and enabled-device counts decoded between its
// transactions: a change made by any other transaction in between is seen,
// not overwritten with the writer's older copy.
func TestWriterCacheSeesOtherWrites(t *testing.T) {
	s := openQuiet(t, t.TempDir())
	ctx := context.Background()
	devs, a := seedAiring(t, s, 2)
	finished := func(dev string, seq uint64) EventRecord {
		r := event(t, dev, "38001", "a1", seq, broadcast.EventFinished)
		r.Event.StartedAt, r.Event.PlayedMS, r.Event.SHA256 = a.Start, a.Audio.DurationMS, a.Audio.SHA256
		// Received once the play is over: a claim of a play still to come
		// counts for nothing.
		r.ReceivedAt = a.Start.Add(a.Audio.Duration() + time.Duration(seq)*time.Second)
		return r
	}
	app, err := s.AppendEvent(ctx, finished(devs[0], 1))
	must(t, err)
	if app.Airing.Status == broadcast.StatusAired {
		t.Fatal("aired by one device of two")
	}
	_, err = s.UpdateAiring(ctx, "a1", func(a *broadcast.Airing) error {
		a.Title = "changed"
		return nil
	}, nil)
	must(t, err)
	must(t, s.DisableDevice(ctx, devs[1], t0, nil))
	app, err = s.AppendEvent(ctx, finished(devs[0], 2))
	must(t, err)
	if app.Airing.Title != "changed" || app.Airing.Status != broadcast.StatusAired {
		t.Errorf("after an update and a device disabled: %q, %s", app.Airing.Title, app.Airing.Status)
	}
	got, err := s.Airing("a1")
	must(t, err)
	if got.Title != "changed" || len(got.Devices[devs[0]].Events) != 2 {
		t.Errorf("stored: %q, %+v", got.Title, got.Devices[devs[0]])
	}
}
