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
// log order), value a binary AsRunEntry (encodeEntry). Beside it:
//
//	asrun_dev   device \0 dseq8 → seq8           dedupe, and Upto's walk over filled gaps
//	asrun_dev   device \0 ff×9 → upto8 max8 last8 uptoHash32   the device's seq state
//
// The seq state sits in the same bucket right after the device's index
// entries, where the next entry goes, so that an event dirties one leaf page
// for both however long the device's history: pages written per commit are
// what a group commit pays for in I/O.
//
// Events are group-committed by one writer goroutine (writer): it takes
// a request, drains every other request already queued (up to MaxBatch),
// applies them all in one bbolt transaction and only after the commit (and
// its fsync) returned answers each caller. While it commits, new requests
// queue; the next transaction takes all of them. Thousands of devices
// acknowledging the same broadcast thus cost a handful of fsyncs, and a
// caller is never told "logged" before its entry is on disk. bbolt's own
// db.Batch is not used: it waits out a timer to gather calls and measured
// about 5k events/s here; this loop does 25-40k on a 2-core VM (see
// bench_test.go), where the limit is the pages each commit writes.
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
// that belongs to another station than rec.Station, is refused with a
// *broadcast.ProtocolError (reason broadcast.RejectAiring) and logs nothing;
// other events committed in the same transaction are unaffected.
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
// and every queued request has been committed and answered.
func (s *Store) writer() {
	defer close(s.writerDone)
	batch := make([]*request, 0, 256)
	for {
		r, ok := <-s.reqs
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
	}
}

// commit applies a batch in one transaction and answers every request. A
// request that is refused (unknown airing…) is refused before it writes
// anything, so it does not spoil the transaction. An error that does spoil
// it (a failed write, a failed fsync) fails the whole transaction; the
// requests are then retried one per transaction, so that one poisonous
// request cannot keep the others from being logged.
func (s *Store) commit(batch []*request) {
	results := make([]result, len(batch))
	var w *batchTx
	start := time.Now()
	var applied time.Duration
	err := s.db.Update(func(tx *bolt.Tx) error {
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
	for i, r := range batch {
		r.reply <- results[i]
	}
}

// batchTx is one group commit's view of the log. Airings and device seq
// states are decoded once per transaction and written back once by flush,
// however many of the batch's events touch them: when a broadcast ends,
// every device of a station reports on the same airing at once.
type batchTx struct {
	s                  *Store
	tx                 *bolt.Tx
	asrun, devIdx, due *bolt.Bucket

	headSeq  uint64
	headHash broadcast.Hash

	airingCache map[string]*broadcast.Airing
	airingKeys  map[string][]byte // id → record key in air_due
	dirtyAir    map[string]bool
	enabled     map[string]int
	seqCache    map[string]*DeviceSeqState
	dirtySeq    map[string]bool

	appended, duplicates, rejected uint64
}

func (s *Store) newBatchTx(tx *bolt.Tx) (*batchTx, error) {
	w := &batchTx{
		s: s, tx: tx,
		asrun: tx.Bucket(bktAsRun), devIdx: tx.Bucket(bktAsRunDev), due: tx.Bucket(bktAirDue),
		airingCache: map[string]*broadcast.Airing{},
		airingKeys:  map[string][]byte{},
		dirtyAir:    map[string]bool{},
		enabled:     map[string]int{},
		seqCache:    map[string]*DeviceSeqState{},
		dirtySeq:    map[string]bool{},
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

	// Everything up to the first Put only reads, so that a refused event
	// leaves no trace in the transaction.
	dk := devSeqKey(rec.Device, ev.Seq)
	if v := w.devIdx.Get(dk); v != nil {
		return w.duplicate(rec, v)
	}
	a, err := w.airing(ev.Airing)
	if broadcast.IsNotFound(err) {
		return refuse(broadcast.RejectAiring, "airing %s is not known", ev.Airing)
	}
	if err != nil {
		return result{err: fmt.Errorf("event %s/%d: %w", rec.Device, ev.Seq, err)}, nil
	}
	if a.Station != rec.Station {
		return refuse(broadcast.RejectAiring, "airing %s is for station %s, not %s", ev.Airing, a.Station, rec.Station)
	}
	st, err := w.seqState(rec.Device)
	if err != nil {
		return result{err: fmt.Errorf("event %s/%d: %w", rec.Device, ev.Seq, err)}, nil
	}

	received := rec.ReceivedAt
	if received.IsZero() {
		received = w.s.now()
	}
	e := broadcast.AsRunEntry{
		Seq:        w.headSeq + 1,
		ReceivedAt: time.Unix(0, received.UnixNano()).UTC(), // as it reads back
		Device:     rec.Device,
		Station:    rec.Station,
		Airing:     ev.Airing,
		DeviceSeq:  ev.Seq,
		Event:      ev.Event,
		Payload:    bytes.Clone(rec.Payload), // the caller may reuse its buffer
		PrevHash:   w.headHash,
	}
	e.Hash = e.ChainHash()
	if err := w.asrun.Put(u64(e.Seq), encodeEntry(&e)); err != nil {
		return result{}, fmt.Errorf("append as-run entry %d: %w", e.Seq, err)
	}
	if err := w.devIdx.Put(dk, u64(e.Seq)); err != nil {
		return result{}, fmt.Errorf("index as-run entry %d: %w", e.Seq, err)
	}
	w.headSeq, w.headHash = e.Seq, e.Hash
	w.appended++

	n, ok := w.enabled[a.Station]
	if !ok {
		n = enabledDevices(w.tx, a.Station)
		w.enabled[a.Station] = n
	}
	broadcast.ApplyEvent(a, rec.Device, ev, e.Seq, n, w.s.policy)
	a.UpdatedAt = e.ReceivedAt
	w.dirtyAir[a.ID] = true

	if ev.Seq > st.Max {
		st.Max = ev.Seq
	}
	st.LastReceived = e.ReceivedAt
	switch {
	case ev.Seq == st.Upto+1 && st.Max == ev.Seq:
		// The usual case, in order and no gap behind: nothing to walk.
		st.Upto, st.UptoHash = ev.Seq, e.Hash
	case ev.Seq == st.Upto+1:
		// This seq closes a gap: walk the index over the seqs that
		// arrived early (consecutive keys, since they are big-endian).
		prefix := key(rec.Device, "")
		c := w.devIdx.Cursor()
		var at []byte // the as-run seq of the entry holding the new Upto
		for k, v := c.Seek(dk); k != nil && hasPrefix(k, prefix) && len(k) == len(prefix)+8; k, v = c.Next() {
			if binary.BigEndian.Uint64(k[len(prefix):]) != st.Upto+1 || len(v) != 8 {
				break
			}
			st.Upto++
			at = v
		}
		h, err := entryHash(w.asrun, at)
		if err != nil {
			return result{}, fmt.Errorf("as-run entry of %s/%d: %w", rec.Device, st.Upto, err)
		}
		st.UptoHash = h
	}
	w.dirtySeq[rec.Device] = true
	// A copy as of this event: later events of the batch go on changing
	// the cached airing.
	return result{app: Appended{Entry: e, Airing: cloneAiring(a), UptoSeq: st.Upto, UptoHash: st.UptoHash}}, nil
}

// duplicate answers an event whose (device, seq) is logged: with the entry
// logged the first time, and the state as it is now.
func (w *batchTx) duplicate(rec EventRecord, idx []byte) (result, error) {
	if len(idx) != 8 {
		return result{err: fmt.Errorf("event %s/%d: corrupt device index entry", rec.Device, rec.Event.Seq)}, nil
	}
	seq := binary.BigEndian.Uint64(idx[:8])
	first, err := decodeEntry(w.asrun.Get(idx[:8]))
	if err != nil {
		return result{err: fmt.Errorf("as-run entry %d: %w", seq, err)}, nil
	}
	if !bytes.Equal(first.Payload, rec.Payload) {
		// Same device, same seq, other bytes: a device bug or a replay
		// attempt. The first is the evidence; the other is only noted.
		w.s.log.Warn("duplicate event seq with a different payload", "device", rec.Device, "seq", rec.Event.Seq, "entry", seq)
	}
	st, err := w.seqState(rec.Device)
	if err != nil {
		return result{err: err}, nil
	}
	app := Appended{Entry: first, Duplicate: true, UptoSeq: st.Upto, UptoHash: st.UptoHash}
	if a, err := w.airing(first.Airing); err == nil {
		app.Airing = cloneAiring(a)
	}
	w.duplicates++
	return result{app: app}, nil
}

func (w *batchTx) airing(id string) (*broadcast.Airing, error) {
	if a, ok := w.airingCache[id]; ok {
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
	w.airingCache[id], w.airingKeys[id] = a, k
	return a, nil
}

func (w *batchTx) seqState(device string) (*DeviceSeqState, error) {
	if st, ok := w.seqCache[device]; ok {
		return st, nil
	}
	st, err := decodeSeqState(w.devIdx.Get(seqStateKey(device)))
	if err != nil {
		return nil, fmt.Errorf("seq state of %s: %w", device, err)
	}
	w.seqCache[device] = &st
	return &st, nil
}

// flush writes back the airings and seq states the batch changed.
func (w *batchTx) flush() error {
	// In key order, so that bbolt walks its pages left to right.
	ids := slices.SortedFunc(maps.Keys(w.dirtyAir), func(a, b string) int {
		return bytes.Compare(w.airingKeys[a], w.airingKeys[b])
	})
	for _, id := range ids {
		// Events change status and devices, never Start or the indexed
		// fields, so the record stays where it is.
		if err := w.due.Put(w.airingKeys[id], encodeAiring(w.airingCache[id])); err != nil {
			return fmt.Errorf("store airing %s: %w", id, err)
		}
	}
	for _, d := range slices.Sorted(maps.Keys(w.dirtySeq)) {
		if err := w.devIdx.Put(seqStateKey(d), encodeSeqState(w.seqCache[d])); err != nil {
			return fmt.Errorf("store seq state of %s: %w", d, err)
		}
	}
	return nil
}

// seqStateKey sorts after every devSeqKey of the device (nine bytes of 0xff
// against eight of seq).
func seqStateKey(device string) []byte {
	k := make([]byte, 0, len(device)+10)
	k = append(k, device...)
	return append(k, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
}

func devSeqKey(device string, seq uint64) []byte {
	k := make([]byte, 0, len(device)+9)
	k = append(k, device...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
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

func encodeSeqState(st *DeviceSeqState) []byte {
	v := make([]byte, 0, 56)
	v = binary.BigEndian.AppendUint64(v, st.Upto)
	v = binary.BigEndian.AppendUint64(v, st.Max)
	v = binary.BigEndian.AppendUint64(v, uint64(st.LastReceived.UnixNano()))
	return append(v, st.UptoHash[:]...)
}

func decodeSeqState(v []byte) (DeviceSeqState, error) {
	if v == nil {
		return DeviceSeqState{}, nil
	}
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

// An as-run entry is stored in a compact binary form: the log is the hot
// path and its largest bucket, and JSON would double the payload (base64)
// and cost a time parse per field.
//
//	version 1 | seq8 | receivedAt ns8 | deviceSeq8 | prevHash32 | hash32 |
//	uvarint-prefixed device, station, airing, event, payload
const entryVersion = 1

const entryFixed = 1 + 8 + 8 + 8 + 32 + 32

func encodeEntry(e *broadcast.AsRunEntry) []byte {
	n := entryFixed + 5*binary.MaxVarintLen16 + len(e.Device) + len(e.Station) + len(e.Airing) + len(e.Event) + len(e.Payload)
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
	return append(v, e.Payload...)
}

var errCorruptEntry = errors.New("corrupt as-run entry")

// decodeEntry copies everything out of v, which is bbolt's memory.
func decodeEntry(v []byte) (broadcast.AsRunEntry, error) {
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
	e.Device, e.Station, e.Airing, e.Event = string(fs[0]), string(fs[1]), string(fs[2]), broadcast.EventType(fs[3])
	if len(fs[4]) > 0 {
		e.Payload = bytes.Clone(fs[4])
	}
	return e, nil
}

func asRunHead(b *bolt.Bucket) (uint64, broadcast.Hash, error) {
	var h broadcast.Hash
	k, v := b.Cursor().Last()
	if k == nil {
		return 0, h, nil
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
	for {
		got := make([]broadcast.AsRunEntry, 0, chunk)
		err := s.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bktAsRun).Cursor()
			for k, v := c.Seek(u64(after + 1)); k != nil && len(got) < chunk; k, v = c.Next() {
				e, err := decodeEntry(v)
				if err != nil {
					return fmt.Errorf("as-run entry %d: %w", binary.BigEndian.Uint64(k), err)
				}
				got = append(got, e)
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
// and the zero hash when it is empty).
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

// DeviceSeq returns what the log holds of a device's seqs; the zero state
// for a device that has sent nothing.
func (s *Store) DeviceSeq(device string) (DeviceSeqState, error) {
	var st DeviceSeqState
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		st, err = decodeSeqState(tx.Bucket(bktAsRunDev).Get(seqStateKey(device)))
		return err
	})
	if err != nil {
		return DeviceSeqState{}, fmt.Errorf("seq state of device %s: %w", device, err)
	}
	return st, nil
}
