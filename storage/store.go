// Package storage is loaxa's one bbolt file and the content-addressed audio
// blobs beside it (docs/design.md, "Storage"). It is the only package that imports
// bbolt: everything else sees broadcast types and the methods of *Store.
//
// Layout of dir:
//
//	loaxa.db          every record, index, log and counter
//	blobs/ab/<sha256> programme audio, named by its content
//	blobs/tmp-*       blobs being written (removed on error; Check reports stale ones)
//
// Durability: every method that changes something returns only after the
// bbolt transaction holding the change has been committed and fsync'd. A
// mutating method may carry an operations-log entry, which is appended in the
// same transaction as the change, so that no change exists without its record
// and no record without its change.
package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Options configure Open. The zero value is usable.
type Options struct {
	LockTimeout time.Duration    // how long Open waits for another process to release the file; default 5s
	Policy      broadcast.Policy // used by AppendEvent to judge airings (broadcast.ApplyEvent); zero means broadcast.DefaultPolicy()
	Now         func() time.Time // default time.Now
	Logger      *slog.Logger     // default discard
	MaxBatch    int              // most requests the group-commit writer puts in one transaction; default 10000

	checkpointEvery time.Duration // how often the device seq states are checkpointed (seqstate.go); default 1s
}

func (o *Options) setDefaults() {
	if o.LockTimeout <= 0 {
		o.LockTimeout = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 10000
	}
	if o.checkpointEvery <= 0 {
		o.checkpointEvery = time.Second
	}
	// A zero policy would judge every finished event off schedule (zero
	// tolerance) and every station aired by one device: never what is meant.
	if p := o.Policy; p.MinDeviceRatio == 0 && p.MinPlayedRatio == 0 && p.StartTolerance == 0 && p.MinReplays == 0 {
		o.Policy = broadcast.DefaultPolicy()
	}
}

// ErrLocked is wrapped by Open when another process holds the file lock.
var ErrLocked = errors.New("another process holds the lock (is loaxad already running?)")

// ErrSchema is wrapped by Open when the file was written by a newer loaxad.
var ErrSchema = errors.New("unsupported schema version")

// ErrClosed is returned by methods called after Close.
var ErrClosed = errors.New("store is closed")

// SchemaVersion is the layout of the bbolt file this code reads and writes.
// Open refuses a file with a higher version: an older binary must not write
// records it does not understand into a newer layout.
//
//  1. the first layout
//  2. device seq states moved from asrun_dev to asrun_seq; asrun_dev is
//     written every seqPending events of a device (seqstate.go)
//  3. air_sm entries carry the airing's summary for compliance (summary.go)
//  4. operations-log entries carry the content hashes of the records they
//     changed (records.go); the upgrade covers the records already there
//     with records.baseline entries; airings in codec version 3
const SchemaVersion = 4

// DBFile is the name of the bbolt file inside the store's directory.
const DBFile = "loaxa.db"

// Bucket names. Keys are described where each bucket is used.
var (
	bktMeta        = []byte("meta")         // "schema" → decimal version
	bktUnits       = []byte("units")        // code → JSON Unit
	bktUnitKids    = []byte("unit_kids")    // parent \0 code → nil
	bktStations    = []byte("stations")     // id → JSON Station
	bktStationPath = []byte("station_path") // path \0 id → nil
	bktDevices     = []byte("devices")      // id → JSON deviceRec
	bktStationDevs = []byte("station_devs") // station \0 device → 1 enabled / 0 disabled
	bktSnapRev     = []byte("snapshot_rev") // device → u64
	bktTokens      = []byte("tokens")       // id → JSON tokenRec
	bktTokenHash   = []byte("token_hash")   // hash → id
	bktProgrammes  = []byte("programmes")   // id → JSON Programme
	bktProgMonth   = []byte("prog_month")   // month \0 id → nil
	bktAirings     = []byte("airings")      // id → start8 (airings.go)
	bktAirDue      = []byte("air_due")      // start8 id → binary Airing
	bktAirSM       = []byte("air_sm")       // station \0 month \0 start8 id → airing summary
	bktAirST       = []byte("air_st")       // station \0 start8 id → nil
	bktAirProg     = []byte("air_prog")     // programme \0 id → start8
	bktAsRun       = []byte("asrun")        // seq8 → binary AsRunEntry
	bktAsRunDev    = []byte("asrun_dev")    // device \0 dseq8 → seq8 (seqstate.go)
	bktAsRunSeq    = []byte("asrun_seq")    // device → seq state (seqstate.go)
	bktOps         = []byte("ops")          // seq8 → JSON OpEntry
)

var allBuckets = [][]byte{
	bktMeta, bktUnits, bktUnitKids, bktStations, bktStationPath, bktDevices,
	bktStationDevs, bktSnapRev, bktTokens, bktTokenHash, bktProgrammes,
	bktProgMonth, bktAirings, bktAirSM, bktAirST, bktAirDue, bktAirProg,
	bktAsRun, bktAsRunDev, bktAsRunSeq, bktOps,
}

// Store is the bbolt file and the blobs directory. Its methods are safe for
// concurrent use.
type Store struct {
	dir    string
	db     *bolt.DB
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	policy broadcast.Policy

	// The group-commit writer (asrun.go). mu guards closed and makes Close
	// wait for senders that are handing a request over, so that no request
	// can enter the queue after the writer's last drain.
	mu         sync.RWMutex
	closed     bool
	reqs       chan *request
	reqPool    sync.Pool // of *request, each with its reply channel
	writerDone chan struct{}
	closeOnce  sync.Once
	closeErr   error

	// The writer's state between transactions, guarded by wmu (held by
	// commit and checkpoint): the device seq states (seqstate.go) and a
	// cache of what it read (writerCache), which every other write
	// transaction invalidates by moving gen.
	wmu    sync.Mutex
	seqs   seqStates
	wcache writerCache
	gen    atomic.Uint64

	devices deviceCache // devcache.go

	// notes are the covered records the running write transaction of
	// update changed (records.go). bbolt runs one write transaction at a
	// time, and its lock orders the goroutines that run them.
	notes *recordNotes

	// forms is where the logs switched to the second hash form
	// (hashform.go); set by Open, never changed.
	forms broadcast.HashForms

	stats struct {
		events, duplicates, rejected, unmatched, commits, checkpoints atomic.Uint64
		commitNanos, applyNanos                                       atomic.Int64
	}
}

// Open opens the store in dir, creating the directory, the bbolt file and the
// blobs directory as needed, checks the schema version and starts the
// group-commit writer. Close it when done.
func Open(dir string, opts Options) (*Store, error) {
	opts.setDefaults()
	if err := os.MkdirAll(filepath.Join(dir, "blobs"), 0o750); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	path := filepath.Join(dir, DBFile)
	if err := checkFile(path); err != nil {
		return nil, err
	}
	var s *Store
	err := guardOpen(path, func() (err error) {
		s, err = open(dir, path, opts)
		return err
	})
	if err != nil {
		return nil, err
	}
	go s.writer()
	return s, nil
}

// open is Open after the file was checked; guardOpen catches what bbolt
// panics on.
func open(dir, path string, opts Options) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		// Without a timeout bbolt waits forever for the flock: a second
		// loaxad would hang silently instead of saying why.
		Timeout: opts.LockTimeout,
		// The map freelist allocates in O(1) where the array one scans; it
		// matters once the file is large and fragmented by airing updates.
		FreelistType: bolt.FreelistMapType,
		// Not writing the freelist on every commit saves pages on each of
		// the many small group commits (a synced freelist is rewritten
		// whole by every commit, and grows with the file). It is safe
		// because the freelist is only derived data: at Open bbolt rebuilds
		// it by walking every page reachable from the committed meta page,
		// and what is unreachable is free, so a crash at any point can
		// neither leak a page nor hand out one still in use. The price is
		// that walk, about a second per GB, once per start. Unlike NoSync
		// (never: a commit must be on disk before its callers are
		// answered), durability of the data is unaffected.
		NoFreelistSync: true,
	})
	if err != nil {
		switch {
		case errors.Is(err, bolterrors.ErrTimeout):
			return nil, fmt.Errorf("open %s: %w: waited %s", path, ErrLocked, opts.LockTimeout)
		case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrVersionMismatch):
			return nil, damaged(path, err.Error())
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &Store{
		dir: dir, db: db, opts: opts, log: opts.Logger, now: opts.Now, policy: opts.Policy,
		reqs:       make(chan *request, min(opts.MaxBatch, 4096)),
		writerDone: make(chan struct{}),
	}
	s.reqPool.New = func() any { return &request{reply: make(chan result, 1)} }
	s.seqs.pub = map[string]DeviceSeqState{}
	if err := s.initSchema(path); err != nil {
		_ = db.Close()
		return nil, err
	}
	// The device seq states of the entries logged after the last
	// checkpoint (after a crash) are replayed from the log now, so that
	// DeviceSeq is right from the start.
	if err := db.View(s.seqs.load); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open %s: device seq states: %w", path, err)
	}
	// A backup's spool file outlives a crash during the backup; nothing
	// else reads it.
	if left, _ := filepath.Glob(filepath.Join(dir, backupPrefix+"*")); len(left) > 0 {
		for _, f := range left {
			_ = os.Remove(f)
		}
		s.log.Info("removed leftover backup spool files", "files", left)
	}
	if removed, err := removeStaleTemps(dir); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	} else if len(removed) > 0 {
		s.log.Info("removed temporary blobs of uploads cut short by a crash", "files", removed)
	}
	return s, nil
}

func (s *Store) initSchema(path string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("open %s: create bucket %s: %w", path, name, err)
			}
		}
		meta := tx.Bucket(bktMeta)
		v := meta.Get([]byte("schema"))
		if v == nil {
			if err := meta.Put([]byte("schema"), []byte(strconv.Itoa(SchemaVersion))); err != nil {
				return err
			}
			if err := s.initHashForms(tx); err != nil {
				return fmt.Errorf("open %s: %w", path, err)
			}
			return nil
		}
		n, err := strconv.Atoi(string(v))
		if err != nil {
			return fmt.Errorf("open %s: schema version %q is not a number: %w", path, v, ErrSchema)
		}
		if n > SchemaVersion {
			return fmt.Errorf("open %s: %w: the file has schema version %d, this loaxad understands up to %d; run a newer loaxad or restore a backup", path, ErrSchema, n, SchemaVersion)
		}
		if err := s.loadHashForms(tx); err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
		if n < 2 {
			moved, err := migrateSeqStates(tx)
			if err != nil {
				return fmt.Errorf("open %s: upgrade schema %d to 2: %w", path, n, err)
			}
			s.log.Info("upgraded the file's schema", "from", n, "to", 2, "device_seq_states", moved)
		}
		if n < 3 {
			summed, err := migrateSummaries(tx)
			if err != nil {
				return fmt.Errorf("open %s: upgrade schema %d to 3: %w", path, max(n, 2), err)
			}
			s.log.Info("upgraded the file's schema", "from", max(n, 2), "to", 3, "airing_summaries", summed)
		}
		if n < 4 {
			covered, err := s.migrateRecordBaseline(tx)
			if err != nil {
				return fmt.Errorf("open %s: upgrade schema %d to 4: %w", path, max(n, 3), err)
			}
			s.log.Info("upgraded the file's schema", "from", max(n, 3), "to", 4, "records_covered", covered)
		}
		if n < SchemaVersion {
			if err := meta.Put([]byte("schema"), []byte(strconv.Itoa(SchemaVersion))); err != nil {
				return err
			}
		}
		if err := s.initHashForms(tx); err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
		return nil
	})
}

// Close stops the group-commit writer and closes the file. Requests already
// queued are committed first; AppendEvent calls made after Close began fail
// with ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.reqs)
		<-s.writerDone
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("close %s: %w", filepath.Join(s.dir, DBFile), err)
		}
	})
	return s.closeErr
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Stats are counters for metrics, since the store was opened.
type Stats struct {
	EventsAppended uint64        // as-run entries written
	Duplicates     uint64        // events whose (device, seq) was already logged
	Commits        uint64        // group-commit transactions
	Rejected       uint64        // events refused (a bad seq, a wrong device…)
	Unmatched      uint64        // events logged that count for no airing (of them, EventsAppended)
	Checkpoints    uint64        // checkpoints of the device seq states
	CommitTime     time.Duration // total time spent in group-commit transactions, fsync included
	ApplyTime      time.Duration // of which applying the requests, before bbolt's commit
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{
		EventsAppended: s.stats.events.Load(),
		Duplicates:     s.stats.duplicates.Load(),
		Commits:        s.stats.commits.Load(),
		Rejected:       s.stats.rejected.Load(),
		Unmatched:      s.stats.unmatched.Load(),
		Checkpoints:    s.stats.checkpoints.Load(),
		CommitTime:     time.Duration(s.stats.commitNanos.Load()),
		ApplyTime:      time.Duration(s.stats.applyNanos.Load()),
	}
}

// errNoChange aborts an update that found nothing to do; update treats it
// as success and, since nothing changed, logs no operation.
var errNoChange = errors.New("no change")

// update runs fn in a write transaction and appends op, if any, to the
// operations log in the same transaction. On success the logged entry (with
// Seq, PrevHash and Hash) is copied back into *op.
func (s *Store) update(ctx context.Context, op *broadcast.OpEntry, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var logged broadcast.OpEntry
	err := s.db.Update(func(tx *bolt.Tx) error {
		// The writer's cache may not hold what this changes, whether or
		// not it commits.
		s.gen.Add(1)
		notes := &recordNotes{}
		s.notes = notes
		defer func() { s.notes = nil }()
		if err := fn(tx); err != nil {
			return err
		}
		if entry := withRecords(op, notes); entry != nil {
			var err error
			if logged, err = s.appendOp(tx, *entry); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, errNoChange) {
		return nil
	}
	if err != nil {
		return s.dbErr(err)
	}
	if op != nil {
		*op = logged
	}
	return nil
}

// view runs fn in a read transaction.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	return s.dbErr(s.db.View(fn))
}

// dbErr turns bbolt's "not open" into ErrClosed.
func (s *Store) dbErr(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

func notFound(kind, id string) error {
	return broadcast.Errorf(broadcast.ENotFound, "%s %q not found", kind, id)
}

// u64 is a big-endian key, so that bbolt's byte order is numeric order.
func u64(n uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return b[:]
}

// timeKey orders instants: nanoseconds since 1970 with the sign bit flipped,
// big-endian, so that times before 1970 sort before those after.
func timeKey(t time.Time) []byte { return u64(uint64(t.UnixNano()) ^ 1<<63) }

// key joins parts with a 0 byte, which no id, code, month or path contains.
func key(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += len(p) + 1
	}
	b := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return b
}

// scan calls fn for every key of b starting with prefix, in order.
func scan(b *bolt.Bucket, prefix []byte, fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}

// ctxWriter fails writes once ctx is done, so that a backup to a client that
// went away stops.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
