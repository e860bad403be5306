package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// Checking a device's ed25519 signature costs about 36 µs (one core of the
// 2-vCPU VM of the benchmarks), decoding the event about 1 µs
// (broadcast.DecodeEventFast; encoding/json took 6), reading the entry from
// bbolt and linking the chain under 1 µs: verification is signature-bound,
// and the signatures of different entries are independent.
// ParallelVerifier therefore links the chain in the caller's goroutine, in
// log order, and fans the payload checks out to workers in batches; a
// collector puts the batches' problems back in entry order.
//
// Memory stays bounded whatever the length of the log: a fixed number of
// batches exists (slotsPerWorker per worker), and the caller blocks in AsRun
// while all of them are in flight. Batches amortise the channel operations,
// which would otherwise cost as much as a cheap entry. A batch is recycled
// only once every batch before it is merged, so a worker that the scheduler
// (or another process) sets aside holds back the batches after its own:
// with 3 slots per worker the others ran dry and verification kept 1.67 of 2
// cores busy; with 16 (about 10 ms of work each, 5 MB in all on 2 cores),
// 1.91 to 1.96.
const (
	batchSize      = 256
	slotsPerWorker = 16
)

// MaxProblems bounds the problems a verification lists: a wholly forged log
// of millions of entries must not take the verifier's memory with it. The
// problems past it are counted in one last problem.
const MaxProblems = 10_000

// ParallelVerifier checks what Verifier checks — the chain links, each
// entry's hash, the numbering, each event's shape and device signature —
// with the signatures checked on all cores, and names the same problems for
// each entry (plus the event type and station checks of checkPayload).
// Problems come by log, the as-run log's then the operations log's, and
// within a log by entry, its end last.
//
// Feed it from one goroutine: StartAsRun/StartOps (for a segment that does
// not begin at the log's genesis), then AsRun and Op in log order, then
// Result. Close releases the workers of a verification that is abandoned;
// Result closes too. AsRun keeps the entry until its batch is checked: the
// caller must not change e.Payload afterwards.
type ParallelVerifier struct {
	device  func(id string) (DeviceKey, bool)
	workers int
	forms   broadcast.HashForms

	asrun, oplog chainState

	started, closed bool
	cur             *asrunJob
	nextJob         uint64
	free            chan *asrunJob // the bounded pool: AsRun waits here when every batch is in flight
	todo            chan *asrunJob // to the workers
	done            chan *asrunJob // to the collector
	workersDone     sync.WaitGroup
	collected       chan struct{}

	// Written by the collector until collected is closed, then read by
	// Result.
	asrunProblems problemList
	// Written by the caller's goroutine only.
	opProblems problemList
}

type asrunJob struct {
	n       uint64
	entries []broadcast.AsRunEntry
	keys    []deviceInfo
	chain   []indexedProblem // chain problems, in entry order
	out     []Problem        // the batch's problems in entry order, by a worker
}

// DeviceKey is what a verifier needs of a registered device.
type DeviceKey struct {
	PublicKey ed25519.PublicKey // nil: the device signs nothing
	// Station is the device's station; the entries' station field, which
	// the chain hash does not cover (it is derived from the registry), must
	// name it. "": not checked.
	Station string
}

type deviceInfo struct {
	DeviceKey
	known bool
	// withheld: the entry is another unit's, given by its content hash
	// alone (a unit's bundle); only its link is checked.
	withheld bool
}

type indexedProblem struct {
	i int
	p Problem
}

// problemList keeps the first MaxProblems problems and counts the rest.
type problemList struct {
	list    []Problem
	dropped int
}

// more says how many problems were left out, if any.
func (l *problemList) more(out []Problem, log string) []Problem {
	if l.dropped == 0 {
		return out
	}
	return append(out, Problem{Log: log, Problem: fmt.Sprintf("%d more problems are not listed; these are the first %d", l.dropped, MaxProblems)})
}

func (l *problemList) add(p Problem) {
	if len(l.list) < MaxProblems {
		l.list = append(l.list, p)
		return
	}
	l.dropped++
}

// NewParallelVerifier returns a verifier that checks signatures with the
// devices device returns (nil: signatures and device registration are not
// checked, as with Verifier's nil Key) on workers goroutines (0:
// runtime.GOMAXPROCS). device is called from the goroutine that calls AsRun
// only, so it needs no locking; it is called once per entry, so it should
// cache.
func NewParallelVerifier(device func(id string) (DeviceKey, bool), workers int) *ParallelVerifier {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	return &ParallelVerifier{device: device, workers: workers}
}

// StartAsRun says that the as-run entries to come begin after entry after,
// whose chain hash is prev: a segment of the log, as in a bundle. Call it
// before the first AsRun.
func (v *ParallelVerifier) StartAsRun(after uint64, prev broadcast.Hash) {
	v.asrun.last, v.asrun.head = after, prev
}

// SetHashForms says where the logs switched to the second hash form (see
// broadcast.HashForms); the zero value, every entry in the first. Call it
// before the first entry.
func (v *ParallelVerifier) SetHashForms(f broadcast.HashForms) { v.forms = f }

// StartOps is StartAsRun for the operations log.
func (v *ParallelVerifier) StartOps(after uint64, prev broadcast.Hash) {
	v.oplog.last, v.oplog.head = after, prev
}

func (v *ParallelVerifier) start() {
	v.started = true
	slots := v.workers * slotsPerWorker
	v.free = make(chan *asrunJob, slots)
	v.todo = make(chan *asrunJob, slots) // never full: only slots jobs exist
	v.done = make(chan *asrunJob, slots)
	v.collected = make(chan struct{})
	for range slots {
		v.free <- &asrunJob{entries: make([]broadcast.AsRunEntry, 0, batchSize), keys: make([]deviceInfo, 0, batchSize)}
	}
	checkSigs := v.device != nil
	for range v.workers {
		v.workersDone.Add(1)
		go func() {
			defer v.workersDone.Done()
			for j := range v.todo {
				j.check(checkSigs)
				v.done <- j
			}
		}()
	}
	go v.collect()
}

// collect merges the batches' problems in batch order, which is entry order,
// and recycles each batch once merged.
func (v *ParallelVerifier) collect() {
	defer close(v.collected)
	pending := map[uint64]*asrunJob{}
	var next uint64
	for j := range v.done {
		pending[j.n] = j
		for {
			j, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			for _, p := range j.out {
				v.asrunProblems.add(p)
			}
			j.reset()
			v.free <- j
		}
	}
}

func (j *asrunJob) reset() {
	clear(j.entries) // let go of the payloads
	clear(j.keys)
	j.entries, j.keys, j.chain, j.out = j.entries[:0], j.keys[:0], j.chain[:0], j.out[:0]
}

// check runs in a worker: the batch's problems, each entry's chain problems
// first and then its payload's, as Verifier.AsRun orders them.
func (j *asrunJob) check(checkSigs bool) {
	c := 0
	for i := range j.entries {
		for ; c < len(j.chain) && j.chain[c].i == i; c++ {
			j.out = append(j.out, j.chain[c].p)
		}
		if !j.keys[i].withheld {
			j.out = checkPayload(j.out, &j.entries[i], j.keys[i], checkSigs)
		}
	}
}

// checkPayload is the payload half of Verifier.AsRun, which it matches
// problem for problem (TestParallelMatchesVerifier holds them together),
// plus two checks Verifier lacks: the entry's event type and station, which
// the chain hash does not cover, must agree with the payload and with the
// device's registered station.
func checkPayload(out []Problem, e *broadcast.AsRunEntry, k deviceInfo, checkSigs bool) []Problem {
	// DecodeEventFast answers as DecodeEvent, which Verifier keeps using, so
	// that TestParallelMatchesVerifier checks the one against the other.
	ev, env, err := broadcast.DecodeEventFast(e.Payload)
	if err != nil {
		return append(out, Problem{Log: "asrun", Entry: e.Seq, Problem: "its payload is not a valid event: " + err.Error()})
	}
	if ev.Device != e.Device || ev.Seq != e.DeviceSeq || ev.Airing != e.Airing {
		out = append(out, Problem{Log: "asrun", Entry: e.Seq, Problem: "its payload names another device, seq or airing than the entry"})
	}
	if ev.Event != e.Event {
		out = append(out, Problem{Log: "asrun", Entry: e.Seq, Problem: fmt.Sprintf("it says event %q where its payload says %q", e.Event, ev.Event)})
	}
	if p, bad := unmatchedProblem(e); bad {
		out = append(out, p)
	}
	if !checkSigs {
		return out
	}
	if !k.known {
		return append(out, Problem{Log: "asrun", Entry: e.Seq, Problem: fmt.Sprintf("device %s is not registered", e.Device)})
	}
	if k.Station != "" && e.Station != k.Station {
		out = append(out, Problem{Log: "asrun", Entry: e.Seq, Problem: fmt.Sprintf("it names station %s but device %s belongs to station %s", e.Station, e.Device, k.Station)})
	}
	if err := env.VerifySignature(k.PublicKey); err != nil {
		out = append(out, Problem{Log: "asrun", Entry: e.Seq, Problem: "device signature: " + err.Error()})
	}
	return out
}

// AsRun checks the next as-run entry: its link now, its payload and
// signature on a worker.
func (v *ParallelVerifier) AsRun(e broadcast.AsRunEntry) {
	j, i := v.batch("AsRun")
	v.asrun.link("asrun", e.Seq, e.PrevHash, e.Hash, e.ChainHashIn(v.forms), func(p Problem) {
		j.chain = append(j.chain, indexedProblem{i: i, p: p})
	})
	var k deviceInfo
	if v.device != nil {
		k.DeviceKey, k.known = v.device(e.Device)
	}
	v.queue(j, e, k)
}

// batch is the batch the next as-run entry goes into, taking a free one
// (and waiting for it while every batch is in flight), and the entry's
// index in it. caller names the method for the panic of a misuse.
func (v *ParallelVerifier) batch(caller string) (*asrunJob, int) {
	if v.closed {
		panic("audit: ParallelVerifier." + caller + " after Result or Close")
	}
	if !v.started {
		v.start()
	}
	if v.cur == nil {
		v.cur = <-v.free
		v.cur.n = v.nextJob
		v.nextJob++
	}
	return v.cur, len(v.cur.entries)
}

func (v *ParallelVerifier) queue(j *asrunJob, e broadcast.AsRunEntry, k deviceInfo) {
	j.entries = append(j.entries, e)
	j.keys = append(j.keys, k)
	if len(j.entries) == batchSize {
		v.todo <- j
		v.cur = nil
	}
}

// Withheld is an entry of another unit in a unit's bundle: its place in the
// chain and the hash of its content (broadcast.AsRunEntry.ContentHash,
// broadcast.OpEntry.ContentHash), nothing of what it says.
type Withheld struct {
	Seq         uint64         `json:"seq"`
	At          time.Time      `json:"at"`
	ContentHash broadcast.Hash `json:"content_hash"`
	PrevHash    broadcast.Hash `json:"prev_hash"`
	Hash        broadcast.Hash `json:"hash"`
}

// link checks a withheld entry's link; only the second hash form can chain
// an entry from its content hash.
func (v *ParallelVerifier) linkWithheld(log string, c *chainState, w Withheld, form int, add func(Problem)) {
	computed := broadcast.ChainHash2(w.PrevHash, w.Seq, w.At, w.ContentHash)
	if form != broadcast.HashForm2 {
		add(Problem{Log: log, Entry: w.Seq, Problem: "it is withheld, but it is chained in the first hash form, which covers its content itself: it cannot be checked"})
		computed = w.Hash // one problem is enough
	}
	c.link(log, w.Seq, w.PrevHash, w.Hash, computed, add)
}

// AsRunWithheld checks the next as-run entry, given as its content hash:
// its link only.
func (v *ParallelVerifier) AsRunWithheld(w Withheld) {
	j, i := v.batch("AsRunWithheld")
	v.linkWithheld("asrun", &v.asrun, w, v.forms.AsRun(w.Seq), func(p Problem) {
		j.chain = append(j.chain, indexedProblem{i: i, p: p})
	})
	v.queue(j, broadcast.AsRunEntry{Seq: w.Seq}, deviceInfo{withheld: true})
}

// OpWithheld checks the next operations-log entry, given as its content
// hash: its link only.
func (v *ParallelVerifier) OpWithheld(w Withheld) {
	v.linkWithheld("oplog", &v.oplog, w, v.forms.Oplog(w.Seq), v.opProblems.add)
}

// Op checks the next operations log entry. Operations carry no signature,
// so they are checked here, in order.
func (v *ParallelVerifier) Op(o broadcast.OpEntry) {
	v.oplog.link("oplog", o.Seq, o.PrevHash, o.Hash, o.ChainHashIn(v.forms), v.opProblems.add)
}

// Close waits for the batches in flight and stops the workers. It is safe to
// call more than once, and after Result.
func (v *ParallelVerifier) Close() {
	if v.closed {
		return
	}
	v.closed = true
	if !v.started {
		return
	}
	if v.cur != nil && len(v.cur.entries) > 0 {
		v.todo <- v.cur
	}
	v.cur = nil
	close(v.todo)
	v.workersDone.Wait()
	close(v.done)
	<-v.collected
}

// Result waits for every check and summarises, as Verifier.Result does:
// head and lastSeq (opHead, lastOp) are where the log (or segment) should
// end. Problems come by log — the as-run log's, then the operations log's —
// and within a log by entry.
func (v *ParallelVerifier) Result(head broadcast.Hash, lastSeq uint64, opHead broadcast.Hash, lastOp uint64) Result {
	v.Close()
	problems := append([]Problem{}, v.asrunProblems.list...)
	problems = v.asrunProblems.more(problems, "asrun")
	if v.asrun.last != lastSeq || v.asrun.head != head {
		problems = append(problems, endProblem("asrun", v.asrun, lastSeq))
	}
	problems = append(problems, v.opProblems.list...)
	problems = v.opProblems.more(problems, "oplog")
	if v.oplog.last != lastOp || v.oplog.head != opHead {
		problems = append(problems, endProblem("oplog", v.oplog, lastOp))
	}
	return Result{OK: len(problems) == 0, Entries: v.asrun.entries, Head: v.asrun.head, OpEntries: v.oplog.entries, OpHead: v.oplog.head, Problems: problems}
}

func endProblem(log string, c chainState, lastSeq uint64) Problem {
	if c.last == lastSeq {
		return Problem{Log: log, Entry: lastSeq, Problem: fmt.Sprintf("the log ends at entry %d as its head says, but with another hash than the head's", lastSeq)}
	}
	return Problem{Log: log, Entry: lastSeq, Problem: fmt.Sprintf("the log ends at entry %d but its head says %d", c.last, lastSeq)}
}

// LogSource is what VerifyLogs reads: the two logs, their heads and the
// device registry (a *storage.Store).
type LogSource interface {
	AsRun(after uint64, fn func(broadcast.AsRunEntry) error) error
	AsRunHead() (uint64, broadcast.Hash, error)
	// AsRunBase is the last purged entry (0: none), after which the log
	// starts.
	AsRunBase() (uint64, broadcast.Hash, error)
	Ops(after uint64, fn func(broadcast.OpEntry) error) error
	OpsHead() (uint64, broadcast.Hash, error)
	Device(id string) (broadcast.Device, error)
	// HashForms is where the logs switched to the second hash form.
	HashForms() (broadcast.HashForms, error)
}

// VerifyLogs checks both logs of src from their genesis to the heads they
// have when it starts (entries appended meanwhile are not judged), with the
// devices' registered keys, on workers goroutines (0: all cores). It is
// what GET /api/v1/audit/verify answers. It streams: memory does not grow
// with the log. An error means the logs could not be read (or ctx ended),
// not that they are wrong: that is what the Result says.
func VerifyLogs(ctx context.Context, src LogSource, workers int) (Result, error) {
	// Heads first: entries appended while we read are beyond them.
	seq, head, err := src.AsRunHead()
	if err != nil {
		return Result{}, fmt.Errorf("verify: %w", err)
	}
	opSeq, opHead, err := src.OpsHead()
	if err != nil {
		return Result{}, fmt.Errorf("verify: %w", err)
	}
	var keyErr error
	keys := map[string]deviceInfo{} // a lookup per device, not per entry
	v := NewParallelVerifier(func(id string) (DeviceKey, bool) {
		if k, ok := keys[id]; ok {
			return k.DeviceKey, k.known
		}
		d, err := src.Device(id)
		switch {
		case broadcast.IsNotFound(err):
			keys[id] = deviceInfo{}
			return DeviceKey{}, false
		case err != nil:
			keyErr = fmt.Errorf("look up device %s: %w", id, err)
			return DeviceKey{}, false
		}
		k := deviceInfo{DeviceKey: DeviceKey{PublicKey: d.PublicKey, Station: d.Station}, known: true}
		keys[id] = k
		return k.DeviceKey, true
	}, workers)
	defer v.Close()
	forms, err := src.HashForms()
	if err != nil {
		return Result{}, fmt.Errorf("verify: %w", err)
	}
	v.SetHashForms(forms)
	base, baseHash, err := src.AsRunBase()
	if err != nil {
		return Result{}, fmt.Errorf("verify: %w", err)
	}
	v.StartAsRun(base, baseHash)
	n := 0
	err = src.AsRun(base, func(e broadcast.AsRunEntry) error {
		if e.Seq > seq {
			return errBeyondHead
		}
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		v.AsRun(e)
		return keyErr
	})
	if err != nil && !errors.Is(err, errBeyondHead) {
		return Result{}, fmt.Errorf("verify the as-run log: %w", err)
	}
	var purges purgeCheck
	err = src.Ops(0, func(o broadcast.OpEntry) error {
		if o.Seq > opSeq {
			return errBeyondHead
		}
		v.Op(o)
		purges.op(o)
		return nil
	})
	if err != nil && !errors.Is(err, errBeyondHead) {
		return Result{}, fmt.Errorf("verify the operations log: %w", err)
	}
	res := v.Result(head, seq, opHead, opSeq)
	res.AsRunBase = base
	if bad := purges.start(base, baseHash); len(bad) > 0 {
		res.OK, res.Problems = false, append(bad, res.Problems...)
	}
	return res, nil
}

var errBeyondHead = errors.New("beyond the head")
