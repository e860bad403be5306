package storage

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

// A device's seqs: what dedupes its events and what its receipts say.
//
//	asrun_seq   device → seq state (encodeSeqState), as of entry meta/asrun_seq_at
//	asrun_dev   device \0 dseq8 → seq8    where (device, dseq) is in the log
//
// Devices number their events 1, 2, 3… and send them in order, so the log
// knows which seqs of a device it holds from Upto (every seq up to it is
// logged) and Max alone, save the few that arrived ahead of a gap. Deciding
// whether an event is a duplicate needs no index: seq ≤ Upto is one, seq >
// Max is not, and only Upto < seq ≤ Max (an open gap, rare) asks where the
// seq is.
//
// Where a logged seq is still matters: a duplicate is answered with the
// entry logged the first time, and devices compares its event id with the
// new one's to tell a re-delivery (receipt again) from a seq reused by a
// wiped device (refused, so that the device keeps its new event). So every
// (device, seq) stays findable: in the device's pending pairs (its recent
// events), else in the asrun_dev index, which gets a device's pairs
// seqPending at a time, onto the one leaf where the device's keys end.
//
// Nothing of this is written by the commit that logs an event. Pages
// written per commit are what a group commit pays for, and any per-device
// record rewritten per event lands on a page of its own once devices report
// in no particular order (as they do: every device finishes the broadcast
// at once). Measured with BenchmarkAppendEvent on the 2-core VM, 64
// writers, ~32 events per commit (airing codec version 1 in the first two):
//
//	an index entry per event, state beside it (schema 1)  ~49 pages/commit  21-30k events/s
//	a state record per event (asrun_seq), index every 32  ~31 pages/commit  40-43k events/s
//	states from the log, checkpointed (this)              ~21 pages/commit  43-51k events/s
//
// and with BenchmarkAppendEventShuffled (devices in no particular order)
// ~77 pages/commit and 17-23k events/s for schema 1, ~31 and 41-43k now.
//
// The as-run log is the write-ahead log of the states: every entry names
// its device, seq, receive time and hash, which is all a state is made of.
// The writer keeps the states it has touched in memory (seqStates.work),
// and a checkpoint (once a second while events arrive, and at Close)
// writes the ones changed since the last checkpoint to asrun_seq, flushes
// the pending pairs of those that have seqPending to the index, and
// records the last entry the states include (meta asrun_seq_at), all in
// one transaction. Open loads nothing but replays the entries after
// asrun_seq_at into the states they change: after a crash, about a second
// of log; after a clean Close, none. A backup is a snapshot of the file, so
// its states and its log agree in the same way.
//
// Seqs far ahead of Upto are not refused here: a device that opens a long
// gap costs pending pairs until the next checkpoint flushes them, like any
// other. The hub refuses seqs more than its MaxSeqAhead past Upto before
// they get here.

// seqPending is how many pairs a device's stored state may hold rather than
// write them to the index: a device that sends a few events between
// checkpoints costs a few bytes in its record, not an index leaf per
// checkpoint.
const seqPending = 32

// checkpointAfter caps the entries logged between two checkpoints, whatever
// the interval: they are what Open replays after a crash (~0.25s per
// million on the 2-core VM), and their pairs are held in memory (16 bytes
// each).
const checkpointAfter = 1 << 20

// seqState is a device's seq state as the writer keeps it.
type seqState struct {
	DeviceSeqState
	pending []seqPair // by dseq; not in asrun_dev
}

// seqPair says that the device's event dseq is as-run entry seq.
type seqPair struct{ dseq, seq uint64 }

func cmpPair(p seqPair, dseq uint64) int { return cmp.Compare(p.dseq, dseq) }

// find returns the as-run seq of the device's dseq if pending holds it.
func (st *seqState) find(dseq uint64) (uint64, bool) {
	if n := len(st.pending); n > 0 && st.pending[n-1].dseq == dseq {
		return st.pending[n-1].seq, true
	}
	i, ok := slices.BinarySearchFunc(st.pending, dseq, cmpPair)
	if !ok {
		return 0, false
	}
	return st.pending[i].seq, true
}

// add notes that dseq, not logged before, is entry seq.
func (st *seqState) add(dseq, seq uint64) {
	if n := len(st.pending); n == 0 || st.pending[n-1].dseq < dseq {
		st.pending = append(st.pending, seqPair{dseq, seq}) // in order: the usual case
		return
	}
	i, _ := slices.BinarySearchFunc(st.pending, dseq, cmpPair)
	st.pending = slices.Insert(st.pending, i, seqPair{dseq, seq})
}

// seqStates are the device seq states. work is the writer's (guarded by
// Store.wmu): complete for every device with entries after asrun_seq_at,
// else loaded from asrun_seq on first use; nil after a failed commit (a
// transaction that failed may have changed states it never wrote), to be
// rebuilt from the file by the next one. pub holds copies of what is
// committed, for DeviceSeq.
type seqStates struct {
	work  map[string]*seqState
	dirty map[string]struct{} // changed since the last checkpoint
	since int                 // entries noted since the last checkpoint

	pubMu sync.RWMutex
	pub   map[string]DeviceSeqState
}

// load rebuilds work: the stored states of the devices that have entries
// after asrun_seq_at, and those entries replayed into them. They are dirty
// (the next checkpoint stores them) and published.
func (ss *seqStates) load(tx *bolt.Tx) error {
	ss.work, ss.dirty, ss.since = map[string]*seqState{}, map[string]struct{}{}, 0
	var at uint64
	if v := tx.Bucket(bktMeta).Get(metaSeqAt); len(v) == 8 {
		at = binary.BigEndian.Uint64(v)
	}
	idx, states := tx.Bucket(bktAsRunDev), tx.Bucket(bktAsRunSeq)
	c := tx.Bucket(bktAsRun).Cursor()
	for k, v := c.Seek(u64(at + 1)); k != nil; k, v = c.Next() {
		e, err := decodeEntryHead(v)
		if err != nil {
			return fmt.Errorf("replay as-run entry %d: %w", binary.BigEndian.Uint64(k), err)
		}
		st, err := ss.get(states, e.Device)
		if err != nil {
			return err
		}
		switch _, dup, err := logged(idx, e.Device, st, e.DeviceSeq); {
		case err != nil:
			return fmt.Errorf("replay as-run entry %d: %w", e.Seq, err)
		case dup || e.DeviceSeq == 0:
			return fmt.Errorf("replay as-run entry %d: %w: %s/%d is logged twice", e.Seq, errCorruptEntry, e.Device, e.DeviceSeq)
		}
		if err := ss.note(tx.Bucket(bktAsRun), idx, e.Device, st, e.DeviceSeq, e.Seq, e.Hash, e.ReceivedAt); err != nil {
			return err
		}
	}
	ss.publish(slices.Collect(maps.Keys(ss.dirty)))
	return nil
}

// full says that the entries logged since the last checkpoint call for
// the next.
func (s *Store) seqsFull() bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.seqs.since >= checkpointAfter
}

// get returns the writer's state of a device, loading it if need be.
func (ss *seqStates) get(states *bolt.Bucket, device string) (*seqState, error) {
	if st, ok := ss.work[device]; ok {
		return st, nil
	}
	st := new(seqState)
	if err := decodeSeqState(states.Get([]byte(device)), st); err != nil {
		return nil, fmt.Errorf("seq state of %s: %w", device, err)
	}
	ss.work[device] = st
	return st, nil
}

// note applies a newly logged entry (the device's dseq, at seq, with hash
// and receive time) to the device's state st.
func (ss *seqStates) note(asrun, idx *bolt.Bucket, device string, st *seqState, dseq, seq uint64, hash broadcast.Hash, received time.Time) error {
	st.add(dseq, seq)
	ss.since++
	ss.dirty[device] = struct{}{}
	st.Max = max(st.Max, dseq)
	st.LastReceived = received
	if dseq != st.Upto+1 {
		return nil
	}
	st.Upto, st.UptoHash = dseq, hash
	// Usually Max is this seq: in order, no gap behind. Else this seq
	// closes a gap: walk over the seqs that arrived early.
	var at uint64 // the as-run seq of the entry holding the new Upto
	for st.Upto < st.Max {
		s, ok, err := logged(idx, device, st, st.Upto+1)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		st.Upto, at = st.Upto+1, s
	}
	if at != 0 {
		h, err := entryHash(asrun, u64(at))
		if err != nil {
			return fmt.Errorf("as-run entry of %s/%d: %w", device, st.Upto, err)
		}
		st.UptoHash = h
	}
	return nil
}

// publish makes the states of devices visible to DeviceSeq: call it once
// they are committed.
func (ss *seqStates) publish(devices []string) {
	ss.pubMu.Lock()
	defer ss.pubMu.Unlock()
	for _, d := range devices {
		ss.pub[d] = ss.work[d].DeviceSeqState
	}
}

// logged returns the as-run seq of the device's event dseq, if logged:
// from pending, else from the index. It only reads.
func logged(idx *bolt.Bucket, device string, st *seqState, dseq uint64) (uint64, bool, error) {
	if dseq == 0 || dseq > st.Max {
		return 0, false, nil
	}
	if seq, ok := st.find(dseq); ok {
		return seq, true, nil
	}
	v := idx.Get(devSeqKey(device, dseq))
	switch {
	case v == nil:
		return 0, false, nil
	case len(v) != 8:
		return 0, false, fmt.Errorf("corrupt device index entry %s/%d", device, dseq)
	}
	return binary.BigEndian.Uint64(v), true, nil
}

// checkpoint stores the states changed since the last checkpoint, with
// the index entries of those that have seqPending pairs, and the last
// entry they include, in one transaction. It runs in the writer (or Close),
// between commits. A checkpoint that fails loses nothing: the states are
// in the log; the next one tries again.
func (s *Store) checkpoint() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	ss := &s.seqs
	if ss.work == nil || len(ss.dirty) == 0 {
		return
	}
	start := time.Now()
	devices := slices.Sorted(maps.Keys(ss.dirty))
	var flushed []*seqState
	err := s.db.Update(func(tx *bolt.Tx) error {
		flushed = flushed[:0]
		idx, states := tx.Bucket(bktAsRunDev), tx.Bucket(bktAsRunSeq)
		head, _, err := asRunHead(tx.Bucket(bktAsRun))
		if err != nil {
			return err
		}
		for _, d := range devices {
			st := ss.work[d]
			rec := *st
			if len(st.pending) >= seqPending {
				// Consecutive keys: they land on the leaf where the
				// device's keys end.
				for _, p := range st.pending {
					if err := idx.Put(devSeqKey(d, p.dseq), u64(p.seq)); err != nil {
						return fmt.Errorf("index %s/%d: %w", d, p.dseq, err)
					}
				}
				rec.pending = nil
				flushed = append(flushed, st)
			}
			if err := states.Put([]byte(d), encodeSeqState(&rec)); err != nil {
				return fmt.Errorf("store seq state of %s: %w", d, err)
			}
		}
		return tx.Bucket(bktMeta).Put(metaSeqAt, u64(head))
	})
	if err != nil {
		s.log.Error("seq state checkpoint failed; the states are safe in the as-run log", "devices", len(devices), "err", s.dbErr(err))
		return
	}
	for _, st := range flushed {
		st.pending = nil // most devices are idle until the next broadcast
	}
	clear(ss.dirty)
	ss.since = 0
	s.stats.checkpoints.Add(1)
	s.log.Debug("seq state checkpoint", "devices", len(devices), "flushed", len(flushed), "took", time.Since(start))
}

// metaSeqAt is the meta key of the last as-run entry that the stored seq
// states include.
var metaSeqAt = []byte("asrun_seq_at")

func devSeqKey(device string, seq uint64) []byte {
	k := make([]byte, 0, len(device)+9)
	k = append(k, device...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

// A seq state is stored as
//
//	version 1 | upto | max | lastReceived (enc.time) | uptoHash (0 or 32 bytes) |
//	n | n × (dseq delta, seq delta zigzag)
//
// in uvarints, the pairs delta-encoded (the first against zero): a
// device's pending seqs are consecutive and its as-run seqs close.
const seqStateVersion = 1

func encodeSeqState(st *seqState) []byte {
	e := enc{b: make([]byte, 0, 64+len(st.pending)*6)}
	e.b = append(e.b, seqStateVersion)
	e.uint(st.Upto)
	e.uint(st.Max)
	e.time(st.LastReceived)
	if st.UptoHash.IsZero() {
		e.uint(0)
	} else {
		e.uint(uint64(len(st.UptoHash)))
		e.b = append(e.b, st.UptoHash[:]...)
	}
	e.uint(uint64(len(st.pending)))
	var d, s uint64
	for _, p := range st.pending {
		e.uint(p.dseq - d)
		e.int(int64(p.seq - s))
		d, s = p.dseq, p.seq
	}
	return e.b
}

// decodeSeqState decodes into st; nil is the state of a device that has
// sent nothing.
func decodeSeqState(v []byte, st *seqState) error {
	*st = seqState{}
	if v == nil {
		return nil
	}
	if len(v) == 0 || v[0] != seqStateVersion {
		return fmt.Errorf("seq state: unknown encoding")
	}
	d := dec{b: v[1:]}
	st.Upto, st.Max = d.uint(), d.uint()
	st.LastReceived = d.time()
	if h := d.bytes(); len(h) == len(st.UptoHash) {
		copy(st.UptoHash[:], h)
	} else if len(h) != 0 {
		return fmt.Errorf("seq state: %w", errCorrupt)
	}
	n := d.uint()
	if n > uint64(len(d.b)) {
		return fmt.Errorf("seq state: %w", errCorrupt)
	}
	if n > 0 {
		st.pending = make([]seqPair, 0, n+1)
	}
	var ds, s uint64
	for range n {
		ds += d.uint()
		s += uint64(d.int())
		st.pending = append(st.pending, seqPair{ds, s})
	}
	if d.err != nil || len(d.b) != 0 {
		return fmt.Errorf("seq state: %w", errCorrupt)
	}
	return nil
}

// DeviceSeq returns what the log holds of a device's seqs; the zero state
// for a device that has sent nothing.
func (s *Store) DeviceSeq(device string) (DeviceSeqState, error) {
	s.seqs.pubMu.RLock()
	st, ok := s.seqs.pub[device]
	s.seqs.pubMu.RUnlock()
	if ok {
		return st, nil
	}
	// Not touched since Open: the stored state is current.
	err := s.view(func(tx *bolt.Tx) error {
		var st2 seqState
		err := decodeSeqState(tx.Bucket(bktAsRunSeq).Get([]byte(device)), &st2)
		st = st2.DeviceSeqState
		return err
	})
	if err != nil {
		return DeviceSeqState{}, fmt.Errorf("seq state of device %s: %w", device, err)
	}
	return st, nil
}

// migrateSeqStates upgrades a schema 1 file, whose seq states sat in
// asrun_dev under device \0 ff×9 (after the device's index entries) as
// upto8 max8 last8 uptoHash32, and whose index held every logged event:
// each state moves to asrun_seq with nothing pending, as of the last entry.
func migrateSeqStates(tx *bolt.Tx) (int, error) {
	idx, dst := tx.Bucket(bktAsRunDev), tx.Bucket(bktAsRunSeq)
	var old [][]byte
	c := idx.Cursor()
	// One seek per device: to where its state is, then past its keys.
	for k, _ := c.First(); k != nil; {
		i := slices.Index(k, 0)
		if i < 0 {
			return 0, fmt.Errorf("migrate seq states: unexpected key %q in %s", k, bktAsRunDev)
		}
		device := string(k[:i])
		sk := v1StateKey(device)
		if k, v := c.Seek(sk); k != nil && string(k) == string(sk) {
			st, err := decodeSeqStateV1(v)
			if err != nil {
				return 0, fmt.Errorf("migrate seq state of %s: %w", device, err)
			}
			if err := dst.Put([]byte(device), encodeSeqState(&seqState{DeviceSeqState: st})); err != nil {
				return 0, fmt.Errorf("migrate seq state of %s: %w", device, err)
			}
			old = append(old, sk)
		}
		k, _ = c.Seek(append([]byte(device), 1))
	}
	for _, k := range old {
		if err := idx.Delete(k); err != nil {
			return 0, fmt.Errorf("migrate seq states: %w", err)
		}
	}
	head, _, err := asRunHead(tx.Bucket(bktAsRun))
	if err != nil {
		return 0, err
	}
	return len(old), tx.Bucket(bktMeta).Put(metaSeqAt, u64(head))
}

// v1StateKey sorted after every index key of the device (nine bytes of
// 0xff against eight of seq).
func v1StateKey(device string) []byte {
	k := make([]byte, 0, len(device)+10)
	k = append(k, device...)
	return append(k, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
}

func decodeSeqStateV1(v []byte) (DeviceSeqState, error) {
	if len(v) != 56 {
		return DeviceSeqState{}, fmt.Errorf("corrupt seq state (%d bytes)", len(v))
	}
	st := DeviceSeqState{
		Upto:         binary.BigEndian.Uint64(v[0:8]),
		Max:          binary.BigEndian.Uint64(v[8:16]),
		LastReceived: time.Unix(0, int64(binary.BigEndian.Uint64(v[16:24]))).UTC(),
	}
	copy(st.UptoHash[:], v[24:56])
	return st, nil
}
