package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

// The as-run log is bucket asrun: key seq8 (big-endian, so the bucket is in
// log order), value a binary AsRunEntry (encodeEntry). Beside it, each
// device's seq state (asrun_seq) and where its seqs are in the log
// (asrun_dev): see seqstate.go for why an event writes the first and only
// every seqPending events the second.
//
// Events are group-committed by one writer goroutine (writer): it takes
// a request, drains every other request already queued (up to MaxBatch),
// applies them all in one bbolt transaction and only after the commit (and
// its fsync) returned answers each caller. While it commits, new requests
// queue; the next transaction takes all of them. Thousands of devices
// acknowledging the same broadcast thus cost a handful of fsyncs, and a
// caller is never told "logged" before its entry is on disk. bbolt's own
// db.Batch is not used: it waits out a timer to gather calls and measured
// about 5k events/s here; this loop does 43-51k on a 2-core VM (see
// bench_test.go), where the limit is the pages each commit writes: the
// log's, and those of the airings the events change.
//
// The writer does not linger to gather more: with many callers, the
// requests that queue during one commit are the next batch, so commits
// follow each other back to back while callers prepare their next events
// during the fsync. Waiting to merge those cohorts into bigger batches was
// measured slower.

// EventRecord is one device event as received: Device (from the topic,
// authenticated) and its Station, ReceivedAt (default Now), the exact
// Payload and the Event parsed from it by the caller. It is the domain's
// type, so that devices can name it without importing storage.
type EventRecord = broadcast.EventRecord

// Appended is the outcome of AppendEvent: the logged entry (for a
// duplicate, the entry logged the first time), whether (device, seq) was
// already logged, the airing after broadcast.ApplyEvent of this event (the
// caller's own copy), and UptoSeq/UptoHash: the highest device seq such that
// every seq 1..UptoSeq of the device is logged, and the chain hash of the
// entry holding it (zero if UptoSeq is 0).
type Appended = broadcast.Appended

// DeviceSeqState is what the as-run log holds of one device's seqs.
type DeviceSeqState = broadcast.DeviceSeqState

type request struct {
	rec   EventRecord // an event to log, unless rev is set
	rev   string      // a device whose snapshot rev to advance
	reply chan result // buffered: the writer never waits for a caller
}

type result struct {
	app Appended
	rev uint64
	err error
}

// AppendEvent logs a device's event in the as-run log, applies it to its
// airing and returns once the transaction holding it is durable; only then
// may the device be sent a receipt.
//
// A (device, seq) already logged is a duplicate: nothing is written and the
// first entry is returned. An event for an airing that does not exist, or
// that belongs to another station than rec.Station, is logged with
// Entry.Unmatched saying so and applied to no airing (Appended.Airing is
// nil). What the store refuses (an invalid device id, seq 0) it answers
// with a *broadcast.ProtocolError and logs nothing; other events committed
// in the same transaction are unaffected.
//
// If ctx is done before the event reached the writer, nothing is logged.
// If it is done while the caller waits for the commit, AppendEvent returns
// ctx's error but the event may still be logged: the device will resend it
// for lack of a receipt, and the resend is answered as a duplicate.
func (s *Store) AppendEvent(ctx context.Context, rec EventRecord) (Appended, error) {
	res, err := s.submit(ctx, request{rec: rec})
	if err != nil {
		return Appended{}, err
	}
	return res.app, nil
}

// submit hands a request to the writer and waits for its answer. Requests
// and their reply channels are pooled: at tens of thousands of events a
// second, their allocation shows.
func (s *Store) submit(ctx context.Context, req request) (result, error) {
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	r := s.reqPool.Get().(*request)
	req.reply = r.reply
	*r = req
	recycle := func() {
		*r = request{reply: r.reply}
		s.reqPool.Put(r)
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		recycle()
		return result{}, ErrClosed
	}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		s.mu.RUnlock()
		recycle()
		return result{}, ctx.Err()
	}
	s.mu.RUnlock()
	select {
	case res := <-r.reply:
		recycle()
		return res, res.err
	case <-ctx.Done():
		// The writer still owns r and will answer on r.reply: r must not
		// go back to the pool.
		return result{}, fmt.Errorf("%w (the request was already queued and may still commit)", ctx.Err())
	}
}

// writer is the group-commit loop. It exits when Close has closed the queue
// and every queued request has been committed and answered, after a last
// checkpoint of the device seq states. Between commits it checkpoints them
// every opts.checkpointEvery, and after checkpointAfter events.
func (s *Store) writer() {
	defer close(s.writerDone)
	defer s.checkpoint()
	tick := time.NewTicker(s.opts.checkpointEvery)
	defer tick.Stop()
	batch := make([]*request, 0, 256)
	for {
		var (
			r  *request
			ok bool
		)
		select {
		case r, ok = <-s.reqs:
		case <-tick.C:
			s.checkpoint()
			continue
		}
		if !ok {
			return
		}
		batch = append(batch[:0], r)
		open := true
	drain:
		for len(batch) < s.opts.MaxBatch {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					open = false
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.commit(batch)
		clear(batch)
		if !open {
			return
		}
		if s.seqsFull() {
			s.checkpoint()
		}
	}
}

// commit applies a batch in one transaction and answers every request. A
// request that is refused (unknown airing…) is refused before it writes
// anything, so it does not spoil the transaction. An error that does spoil
// it (a failed write, a failed fsync) fails the whole transaction; the
// requests are then retried one per transaction, so that one poisonous
// request cannot keep the others from being logged.
//
// The device seq states the batch changed are published (DeviceSeq) once
// the transaction is durable; if it failed, the writer's states and cache
// are dropped, to be rebuilt from the file by the next transaction.
func (s *Store) commit(batch []*request) {
	results := make([]result, len(batch))
	start := time.Now()
	w, applied, err := s.commitTx(batch, results, start)
	if err != nil {
		err = s.dbErr(err)
		if len(batch) > 1 {
			s.log.Error("group commit failed; retrying its requests one by one", "requests", len(batch), "err", err)
			for _, r := range batch {
				s.commit([]*request{r})
			}
			return
		}
		s.log.Error("as-run commit failed", "err", err)
		batch[0].reply <- result{err: fmt.Errorf("commit: %w", err)}
		return
	}
	s.stats.commits.Add(1)
	s.stats.commitNanos.Add(int64(time.Since(start)))
	s.stats.applyNanos.Add(int64(applied))
	s.stats.events.Add(w.appended)
	s.stats.duplicates.Add(w.duplicates)
	s.stats.rejected.Add(w.rejected)
	s.stats.unmatched.Add(w.unmatched)
	for i, r := range batch {
		r.reply <- results[i]
	}
}

// commitTx is commit's transaction, with the writer's state held.
func (s *Store) commitTx(batch []*request, results []result, start time.Time) (w *batchTx, applied time.Duration, err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	ss := &s.seqs
	err = s.db.Update(func(tx *bolt.Tx) error {
		// No other write transaction runs now: if none ran since the
		// last, the cache is what the file holds.
		if g := s.gen.Load(); g != s.wcache.gen || s.wcache.airings == nil || len(s.wcache.airings) > writerCacheMax {
			s.wcache.reset(g)
		}
		if ss.work == nil {
			if err := ss.load(tx); err != nil {
				return fmt.Errorf("rebuild device seq states: %w", err)
			}
		}
		var err error
		if w, err = s.newBatchTx(tx); err != nil {
			return err
		}
		for i, r := range batch {
			if results[i], err = w.apply(r); err != nil {
				return err
			}
		}
		err = w.flush()
		applied = time.Since(start)
		return err
	})
	if err != nil {
		ss.work = nil
		s.wcache = writerCache{}
		return nil, 0, err
	}
	ss.publish(w.dirtySeq)
	return w, applied, nil
}

// writerCache is what the writer keeps of the file between its
// transactions, besides the seq states: the airings its events changed,
// decoded (decoding them again was a third of applying an event), with
// their keys in air_due, and the stations' counts of enabled devices. It
// is only ever right if no one else wrote: every other write transaction
// (update, AppendOp) moves Store.gen inside the transaction, and the
// writer, whose transaction runs after it (bbolt has one writer at a
// time), drops the cache when gen moved, when its own transaction failed
// (its changes in the cache did not reach the file) and when it holds more
// than writerCacheMax airings.
type writerCache struct {
	gen     uint64
	airings map[string]*broadcast.Airing
	keys    map[string][]byte // id → record key in air_due
	enabled map[string]int
}

// writerCacheMax bounds the airings the writer keeps decoded (a few KB
// each): a few broadcasts' worth for a province, one for the country.
const writerCacheMax = 4096

func (c *writerCache) reset(gen uint64) {
	*c = writerCache{gen: gen, airings: map[string]*broadcast.Airing{}, keys: map[string][]byte{}, enabled: map[string]int{}}
}

// batchTx is one group commit's view of the log. Airings are decoded once
// and written back once per transaction by flush, however many of the
// batch's events touch them: when a broadcast ends, every device of a
// station reports on the same airing at once. Device seq states change in
// the writer's memory (seqstate.go).
type batchTx struct {
	s                          *Store
	tx                         *bolt.Tx
	asrun, devIdx, devSeq, due *bolt.Bucket

	headSeq  uint64
	headHash broadcast.Hash

	*writerCache
	dirtyAir map[string]bool
	dirtySeq []string // devices whose seq state changed, to publish

	appended, duplicates, rejected, unmatched uint64
}

func (s *Store) newBatchTx(tx *bolt.Tx) (*batchTx, error) {
	w := &batchTx{
		s: s, tx: tx,
		asrun: tx.Bucket(bktAsRun), devIdx: tx.Bucket(bktAsRunDev), devSeq: tx.Bucket(bktAsRunSeq), due: tx.Bucket(bktAirDue),
		writerCache: &s.wcache,
		dirtyAir:    map[string]bool{},
	}
	// The log only grows at its end: full pages waste nothing.
	w.asrun.FillPercent = 1.0
	var err error
	w.headSeq, w.headHash, err = asRunHead(w.asrun)
	return w, err
}

// apply handles one request. A returned error aborts the transaction; a
// refusal of the request alone is returned in the result.
func (w *batchTx) apply(r *request) (result, error) {
	if r.rev != "" {
		n, err := nextRev(w.tx, r.rev)
		return result{rev: n}, err
	}
	rec, ev := r.rec, r.rec.Event
	refuse := func(reason, format string, args ...any) (result, error) {
		w.rejected++
		err := &broadcast.ProtocolError{Reason: reason, Msg: fmt.Sprintf(format, args...)}
		w.s.log.Debug("event refused", "device", rec.Device, "seq", ev.Seq, "err", err)
		return result{err: err}, nil
	}
	switch {
	case !broadcast.ValidID(rec.Device):
		return refuse(broadcast.RejectDevice, "device %q is not a valid device id", rec.Device)
	case ev.Device != "" && ev.Device != rec.Device:
		return refuse(broadcast.RejectDevice, "event of device %s received from device %s", ev.Device, rec.Device)
	case ev.Seq == 0:
		return refuse(broadcast.RejectSeq, "seq must start at 1")
	}

	// Everything up to the first Put only reads (the cached seq state
	// changes after it), so that a refused event leaves no trace in the
	// transaction.
	st, err := w.s.seqs.get(w.devSeq, rec.Device)
	if err != nil {
		return result{err: fmt.Errorf("event %s/%d: %w", rec.Device, ev.Seq, err)}, nil
	}
	if ev.Seq <= st.Max {
		// At or below Upto, a duplicate; between Upto and Max, one if it
		// arrived ahead of a gap. Above Max, new: the usual case needs no
		// lookup.
		seq, ok, err := logged(w.devIdx, rec.Device, st, ev.Seq)
		switch {
		case err != nil:
			return result{err: fmt.Errorf("event %s/%d: %w", rec.Device, ev.Seq, err)}, nil
		case ok:
			return w.duplicate(rec, st, seq)
		case ev.Seq <= st.Upto:
			return result{err: fmt.Errorf("event %s/%d: logged (upto %d) but not in the device index", rec.Device, ev.Seq, st.Upto)}, nil
		}
	}
	// An event that names no airing of the device's station is logged all
	// the same, marked as counting for none: the device signed it, and
	// refusing it would hold back the receipts of every later event (a
	// receipt covers contiguous seqs), so that the device re-sent it for
	// ever. It happens when the daemon's file was restored from a backup
	// older than the device's snapshot.
	var unmatched string
	a, err := w.airing(ev.Airing)
	switch {
	case broadcast.IsNotFound(err):
		unmatched = broadcast.UnmatchedUnknownAiring
	case err != nil:
		return result{err: fmt.Errorf("event %s/%d: %w", rec.Device, ev.Seq, err)}, nil
	case a.Station != rec.Station:
		unmatched = broadcast.UnmatchedOtherStation
	}

	received := rec.ReceivedAt
	if received.IsZero() {
		received = w.s.now()
	}
	received = time.Unix(0, received.UnixNano()).UTC() // as it reads back
	if unmatched == "" {
		// Judged on what the entry's hash covers (its time of receipt and
		// the payload), so that a verifier reaches the same verdict.
		unmatched = broadcast.Implausible(ev, received, w.s.policy)
	}
	e := broadcast.AsRunEntry{
		Seq:        w.headSeq + 1,
		ReceivedAt: received,
		Device:     rec.Device,
		Station:    rec.Station,
		Airing:     ev.Airing,
		DeviceSeq:  ev.Seq,
		Event:      ev.Event,
		Payload:    bytes.Clone(rec.Payload), // the caller may reuse its buffer
		Unmatched:  unmatched,
		PrevHash:   w.headHash,
	}
	e.Hash = e.ChainHashIn(w.s.forms)
	if err := w.asrun.Put(u64(e.Seq), encodeEntry(&e)); err != nil {
		return result{}, fmt.Errorf("append as-run entry %d: %w", e.Seq, err)
	}
	w.headSeq, w.headHash = e.Seq, e.Hash
	w.appended++

	var applied *broadcast.Airing
	if unmatched == "" {
		n, ok := w.enabled[a.Station]
		if !ok {
			n = enabledDevices(w.tx, a.Station)
			w.enabled[a.Station] = n
		}
		broadcast.ApplyEvent(a, rec.Device, ev, e.Seq, n, w.s.policy)
		a.UpdatedAt = e.ReceivedAt
		w.dirtyAir[a.ID] = true
		// A copy as of this event: later events of the batch go on
		// changing the cached airing.
		applied = cloneAiring(a)
	} else {
		w.unmatched++
		w.s.log.Debug("event logged for no airing", "device", rec.Device, "seq", ev.Seq, "airing", ev.Airing, "why", unmatched)
	}

	if err := w.s.seqs.note(w.asrun, w.devIdx, rec.Device, st, ev.Seq, e.Seq, e.Hash, e.ReceivedAt); err != nil {
		return result{}, err
	}
	w.dirtySeq = append(w.dirtySeq, rec.Device)
	return result{app: Appended{Entry: e, Airing: applied, UptoSeq: st.Upto, UptoHash: st.UptoHash}}, nil
}

// duplicate answers an event whose (device, seq) is logged as entry seq:
// with that entry, and the state as it is now.
func (w *batchTx) duplicate(rec EventRecord, st *seqState, seq uint64) (result, error) {
	v := w.asrun.Get(u64(seq))
	if base, _ := asRunBase(w.tx); v == nil && seq <= base {
		// Logged, and purged since (years later): a duplicate all the same.
		w.duplicates++
		return result{app: Appended{Entry: broadcast.AsRunEntry{Seq: seq, Device: rec.Device, DeviceSeq: rec.Event.Seq},
			Duplicate: true, UptoSeq: st.Upto, UptoHash: st.UptoHash}}, nil
	}
	first, err := decodeEntry(v)
	if err != nil {
		return result{err: fmt.Errorf("as-run entry %d: %w", seq, err)}, nil
	}
	if !bytes.Equal(first.Payload, rec.Payload) {
		// Same device, same seq, other bytes: a device bug or a replay
		// attempt. The first is the evidence; the other is only noted.
		w.s.log.Warn("duplicate event seq with a different payload", "device", rec.Device, "seq", rec.Event.Seq, "entry", seq)
	}
	app := Appended{Entry: first, Duplicate: true, UptoSeq: st.Upto, UptoHash: st.UptoHash}
	if first.Unmatched == "" {
		if a, err := w.airing(first.Airing); err == nil {
			app.Airing = cloneAiring(a)
		}
	}
	w.duplicates++
	return result{app: app}, nil
}

func (w *batchTx) airing(id string) (*broadcast.Airing, error) {
	if a, ok := w.airings[id]; ok {
		return a, nil
	}
	k := airingKey(w.tx, id)
	if k == nil {
		return nil, notFound("airing", id)
	}
	a, err := decodeAiring(id, w.due.Get(k))
	if err != nil {
		return nil, err
	}
	w.airings[id], w.keys[id] = a, k
	return a, nil
}

// flush writes back the airings the batch changed.
func (w *batchTx) flush() error {
	// In key order, so that bbolt walks its pages left to right.
	ids := slices.SortedFunc(maps.Keys(w.dirtyAir), func(a, b string) int {
		return bytes.Compare(w.keys[a], w.keys[b])
	})
	for _, id := range ids {
		// Events change status and devices, never Start or the indexed
		// fields, so the record stays where it is; of its index entries,
		// only the summary changes.
		if err := w.due.Put(w.keys[id], encodeAiring(w.airings[id])); err != nil {
			return fmt.Errorf("store airing %s: %w", id, err)
		}
		if err := putSummary(w.tx.Bucket(bktAirSM), w.airings[id]); err != nil {
			return err
		}
	}
	return nil
}

// entryHash reads the chain hash of the as-run entry whose key is k.
func entryHash(asrun *bolt.Bucket, k []byte) (broadcast.Hash, error) {
	var h broadcast.Hash
	v := asrun.Get(k)
	if len(v) < entryFixed || v[0] != entryVersion {
		return h, errCorruptEntry
	}
	copy(h[:], v[57:89])
	return h, nil
}

// An as-run entry is stored in a compact binary form: the log is the hot
// path and its largest bucket, and JSON would double the payload (base64)
// and cost a time parse per field.
//
//	version 1 | seq8 | receivedAt ns8 | deviceSeq8 | prevHash32 | hash32 |
//	uvarint-prefixed device, station, airing, event, payload
const entryVersion = 1

const entryFixed = 1 + 8 + 8 + 8 + 32 + 32

func encodeEntry(e *broadcast.AsRunEntry) []byte {
	n := entryFixed + 6*binary.MaxVarintLen16 + len(e.Device) + len(e.Station) + len(e.Airing) + len(e.Event) + len(e.Payload) + len(e.Unmatched)
	v := make([]byte, 0, n)
	v = append(v, entryVersion)
	v = binary.BigEndian.AppendUint64(v, e.Seq)
	v = binary.BigEndian.AppendUint64(v, uint64(e.ReceivedAt.UnixNano()))
	v = binary.BigEndian.AppendUint64(v, e.DeviceSeq)
	v = append(v, e.PrevHash[:]...)
	v = append(v, e.Hash[:]...)
	for _, f := range []string{e.Device, e.Station, e.Airing, string(e.Event)} {
		v = binary.AppendUvarint(v, uint64(len(f)))
		v = append(v, f...)
	}
	v = binary.AppendUvarint(v, uint64(len(e.Payload)))
	v = append(v, e.Payload...)
	// After the payload, where the decoders of entries written before the
	// field stop reading: an entry that matches its airing, the usual case,
	// is stored as it always was.
	if e.Unmatched != "" {
		v = binary.AppendUvarint(v, uint64(len(e.Unmatched)))
		v = append(v, e.Unmatched...)
	}
	return v
}

var errCorruptEntry = errors.New("corrupt as-run entry")

// decodeEntryHead decodes what the device seq states are made of: Seq,
// ReceivedAt, DeviceSeq, Hash and Device.
func decodeEntryHead(v []byte) (broadcast.AsRunEntry, error) {
	var e broadcast.AsRunEntry
	if len(v) < entryFixed || v[0] != entryVersion {
		return e, errCorruptEntry
	}
	e.Seq = binary.BigEndian.Uint64(v[1:9])
	e.ReceivedAt = time.Unix(0, int64(binary.BigEndian.Uint64(v[9:17]))).UTC()
	e.DeviceSeq = binary.BigEndian.Uint64(v[17:25])
	copy(e.Hash[:], v[57:89])
	rest := v[entryFixed:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || uint64(len(rest)-k) < n {
		return e, errCorruptEntry
	}
	e.Device = string(rest[k : k+int(n)])
	return e, nil
}

// decodeEntry copies everything out of v, which is bbolt's memory.
func decodeEntry(v []byte) (broadcast.AsRunEntry, error) {
	return decodeEntryAfter(v, nil)
}

// decodeEntryAfter is decodeEntry for a walk of the log: where the entry
// names the same station, airing and event as prev, the entry before it
// (nil at the start of a walk), it shares prev's strings instead of
// allocating its own. The entries of one broadcast's end come by the
// thousand for one airing, and those allocations were most of what a walk
// allocated besides the payloads.
func decodeEntryAfter(v []byte, prev *broadcast.AsRunEntry) (broadcast.AsRunEntry, error) {
	var e broadcast.AsRunEntry
	if len(v) < entryFixed || v[0] != entryVersion {
		return e, errCorruptEntry
	}
	e.Seq = binary.BigEndian.Uint64(v[1:9])
	e.ReceivedAt = time.Unix(0, int64(binary.BigEndian.Uint64(v[9:17]))).UTC()
	e.DeviceSeq = binary.BigEndian.Uint64(v[17:25])
	copy(e.PrevHash[:], v[25:57])
	copy(e.Hash[:], v[57:89])
	rest := v[entryFixed:]
	field := func() ([]byte, bool) {
		n, k := binary.Uvarint(rest)
		if k <= 0 || uint64(len(rest)-k) < n {
			return nil, false
		}
		f := rest[k : k+int(n)]
		rest = rest[k+int(n):]
		return f, true
	}
	var fs [5][]byte
	for i := range fs {
		f, ok := field()
		if !ok {
			return e, errCorruptEntry
		}
		fs[i] = f
	}
	e.Device = string(fs[0])
	if prev != nil && string(fs[1]) == prev.Station && string(fs[2]) == prev.Airing && string(fs[3]) == string(prev.Event) {
		e.Station, e.Airing, e.Event = prev.Station, prev.Airing, prev.Event
	} else {
		e.Station, e.Airing, e.Event = string(fs[1]), string(fs[2]), broadcast.EventType(fs[3])
	}
	if len(fs[4]) > 0 {
		e.Payload = bytes.Clone(fs[4])
	}
	if len(rest) > 0 {
		f, ok := field()
		if !ok || len(rest) > 0 {
			return e, errCorruptEntry
		}
		e.Unmatched = string(f)
	}
	return e, nil
}

func asRunHead(b *bolt.Bucket) (uint64, broadcast.Hash, error) {
	var h broadcast.Hash
	k, v := b.Cursor().Last()
	if k == nil {
		// Empty, or purged to its end: the next entry chains from the
		// last purged one (purge.go).
		seq, h := asRunBase(b.Tx())
		return seq, h, nil
	}
	if len(v) < entryFixed || v[0] != entryVersion {
		return 0, h, fmt.Errorf("as-run entry %d: %w", binary.BigEndian.Uint64(k), errCorruptEntry)
	}
	copy(h[:], v[57:89])
	return binary.BigEndian.Uint64(k), h, nil
}

// AsRun calls fn for every as-run entry after seq after, in log order. It
// reads chunks of about a thousand entries, each in its own short read
// transaction, and calls fn outside them, so that streaming the whole log to
// an auditor never holds one read transaction open (which would stall the
// writer once the file must grow). fn's error stops the walk and is returned.
func (s *Store) AsRun(after uint64, fn func(broadcast.AsRunEntry) error) error {
	// One chunk's array serves every chunk: fn got copies of the entries,
	// and a new array of a thousand entries per chunk was 200 MB of garbage
	// for a walk of a million.
	got := make([]broadcast.AsRunEntry, 0, chunk)
	for {
		got = got[:0]
		err := s.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bktAsRun).Cursor()
			var prev *broadcast.AsRunEntry
			for k, v := c.Seek(u64(after + 1)); k != nil && len(got) < chunk; k, v = c.Next() {
				e, err := decodeEntryAfter(v, prev)
				if err != nil {
					return fmt.Errorf("as-run entry %d: %w", binary.BigEndian.Uint64(k), err)
				}
				got = append(got, e)
				prev = &got[len(got)-1]
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read as-run log after %d: %w", after, err)
		}
		for _, e := range got {
			if err := fn(e); err != nil {
				return err
			}
			after = e.Seq
		}
		if len(got) < chunk {
			return nil
		}
	}
}

// AsRunHead returns the last sequence number and hash of the as-run log (0
// and the zero hash when it is empty; the last purged entry's when it was
// purged to its end).
func (s *Store) AsRunHead() (seq uint64, hash broadcast.Hash, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		seq, hash, err = asRunHead(tx.Bucket(bktAsRun))
		return err
	})
	if err != nil {
		return 0, broadcast.Hash{}, fmt.Errorf("as-run head: %w", err)
	}
	return seq, hash, nil
}
