package audit

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// The logs' chains say nothing of the records a report is computed from
// (units, stations, devices and their keys, programmes, airings) unless
// the records are tied to them. Storage ties them in two ways, and
// VerifyRecords checks both:
//
//   - what operators and the scheduler decide (a programme, an airing's
//     plan and cancellation, a device and its key, a unit) is covered by
//     the content hash its last operations-log entry recorded: a record
//     that differs, or that no entry accounts for, was changed outside
//     loaxa;
//   - what the devices' events decide (whether each device aired an
//     airing, and so the airing's status) is rebuilt from the as-run
//     entries the airing cites, and those must be exactly the entries the
//     log holds for it.

// RecordSource is what VerifyRecords reads (a *storage.Store).
type RecordSource interface {
	Ops(after uint64, fn func(broadcast.OpEntry) error) error
	OpsHead() (uint64, broadcast.Hash, error)
	RecordHashes(fn func(broadcast.RecordHash) error) error
	RecordHash(key string) (broadcast.Hash, bool, error)
	AsRunHead() (uint64, broadcast.Hash, error)
	AsRun(after uint64, fn func(broadcast.AsRunEntry) error) error
	AsRunBase() (uint64, broadcast.Hash, error)
	AsRunEntriesAt(seqs []uint64) (map[uint64]broadcast.AsRunEntry, error)
	EachAiring(fn func(broadcast.AiringCheck) error) error
	Devices(station string) ([]broadcast.Device, error)
	IndexProblems(fn func(record, problem string) error) error
}

// StoreSource is what VerifyStore reads: both logs and the records.
type StoreSource interface {
	LogSource
	RecordSource
}

// VerifyStore is the whole of GET /api/v1/audit/verify: the logs
// (VerifyLogs, signatures on workers goroutines) and the records
// (VerifyRecords) at once. The records' pass runs on one core beside the
// signature checks, so that the wall time is the CPU of both over the
// cores, not their sum.
func VerifyStore(ctx context.Context, src StoreSource, p broadcast.Policy, workers int) (Result, error) {
	var (
		rec    RecordsResult
		recErr error
		done   = make(chan struct{})
	)
	go func() {
		defer close(done)
		rec, recErr = VerifyRecords(ctx, src, p)
	}()
	res, err := VerifyLogs(ctx, src, workers)
	<-done
	if err != nil {
		return res, err
	}
	if recErr != nil {
		return res, recErr
	}
	res.Records, res.Airings = rec.Records, rec.Airings
	if len(rec.Problems) > 0 {
		res.OK, res.Problems = false, append(res.Problems, rec.Problems...)
	}
	return res, nil
}

// RecordsResult is what VerifyRecords found.
type RecordsResult struct {
	Records  uint64    // covered records re-hashed
	Airings  uint64    // airings whose status was rebuilt from their evidence
	Problems []Problem // log "records", each naming its record
}

// VerifyRecords re-hashes every covered record of src against the hash the
// operations log last recorded for it, and rebuilds every airing's device
// verdicts from the as-run entries it cites, with policy p (the rules of
// broadcast.ApplyEvent). Like VerifyLogs, an error means src could not be
// read; what is wrong with it is in the result.
//
// Memory grows with the records (a hash per record, a counter per airing
// with evidence), not with the as-run log.
func VerifyRecords(ctx context.Context, src RecordSource, p broadcast.Policy) (RecordsResult, error) {
	var res RecordsResult
	var problems problemList
	add := func(record string, entry uint64, format string, args ...any) {
		problems.add(Problem{Log: "records", Record: record, Entry: entry, Problem: fmt.Sprintf(format, args...)})
	}

	// The daemon goes on while this reads: heads first, and what seems
	// wrong is looked at again after the walks (recheck), with the entries
	// logged meanwhile.
	opHead, _, err := src.OpsHead()
	if err != nil {
		return res, fmt.Errorf("verify records: %w", err)
	}
	asrunHead, _, err := src.AsRunHead()
	if err != nil {
		return res, fmt.Errorf("verify records: %w", err)
	}
	last := map[string]recorded{}
	if err := lastRecorded(src, 0, opHead, last); err != nil {
		return res, fmt.Errorf("verify records: %w", err)
	}
	var suspects []string
	// Airings last recorded as found at the upgrade may be cancelled
	// without a cancellation time: they were written before it existed.
	legacy := map[string]bool{}
	err = src.RecordHashes(func(r broadcast.RecordHash) error {
		res.Records++
		if res.Records%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		l, ok := last[r.Key]
		if !ok || l.hash != r.Hash {
			suspects = append(suspects, r.Key)
		}
		if l.baseline {
			legacy[r.Key] = true
		}
		delete(last, r.Key)
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("verify records: %w", err)
	}
	for k := range last {
		suspects = append(suspects, k)
	}
	if err := recheck(src, suspects, add); err != nil {
		return res, fmt.Errorf("verify records: %w", err)
	}

	err = src.IndexProblems(func(record, problem string) error {
		add(record, 0, "%s", problem)
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("verify records: %w", err)
	}

	// A purge that commits while the evidence is read removes entries it
	// expects: then it is read again, once, from the new base.
	for try := 0; ; try++ {
		base, _, err := src.AsRunBase()
		if err != nil {
			return res, fmt.Errorf("verify records: %w", err)
		}
		var found problemList
		res.Airings, err = verifyEvidence(ctx, src, p, base, asrunHead, legacy, func(record string, entry uint64, format string, args ...any) {
			found.add(Problem{Log: "records", Record: record, Entry: entry, Problem: fmt.Sprintf(format, args...)})
		}, func(seq uint64, format string, args ...any) {
			found.add(Problem{Log: "asrun", Entry: seq, Problem: fmt.Sprintf(format, args...)})
		})
		if err != nil {
			return res, fmt.Errorf("verify records: %w", err)
		}
		after, _, err := src.AsRunBase()
		if err != nil {
			return res, fmt.Errorf("verify records: %w", err)
		}
		if after == base || try == 1 {
			for _, p := range found.list {
				problems.add(p)
			}
			break
		}
	}
	res.Problems = problems.more(problems.list, "records")
	if res.Problems == nil {
		res.Problems = []Problem{}
	}
	return res, nil
}

// verifyEvidence checks every airing's verdicts against the as-run log
// from base to head, and returns how many airings it read.
func verifyEvidence(ctx context.Context, src RecordSource, p broadcast.Policy, base, head uint64, legacy map[string]bool,
	add func(record string, entry uint64, format string, args ...any), addEntry func(seq uint64, format string, args ...any)) (uint64, error) {
	cited, err := citedByLog(ctx, src, base, head, p, addEntry)
	if err != nil {
		return 0, err
	}
	var airings uint64
	ev := evidenceCheck{src: src, policy: p, base: base, head: head, legacy: legacy, add: add, devices: map[string][]broadcast.Device{}}
	err = src.EachAiring(func(c broadcast.AiringCheck) error {
		if c.Airing == nil {
			// RecordHashes named it already: its hash cannot match.
			delete(cited, c.ID)
			return nil
		}
		airings++
		if airings%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		key := broadcast.RecordKey(broadcast.RecordAiring, c.ID)
		if !c.SummaryOK {
			add(key, 0, "its summary, from which reports are computed, does not match the airing")
		}
		want := cited[c.ID]
		delete(cited, c.ID)
		return ev.check(c.Airing, want)
	})
	if err != nil {
		return airings, err
	}
	for _, id := range slices.Sorted(maps.Keys(cited)) {
		add(broadcast.RecordKey(broadcast.RecordAiring, id), cited[id].first,
			"as-run entry %d counts for this airing (it is not marked unmatched), but the file holds no such airing", cited[id].first)
	}
	return airings, nil
}

type recorded struct {
	hash     broadcast.Hash
	op       uint64
	baseline bool // recorded as found at the upgrade to schema 4
}

// lastRecorded notes, for each record, the hash the last operations-log
// entry after after and up to upto recorded.
func lastRecorded(src RecordSource, after, upto uint64, last map[string]recorded) error {
	err := src.Ops(after, func(o broadcast.OpEntry) error {
		if o.Seq > upto {
			return errBeyondHead
		}
		for _, r := range o.Records {
			last[r.Key] = recorded{r.Hash, o.Seq, o.Action == broadcast.ActionRecordsBaseline}
		}
		return nil
	})
	if errors.Is(err, errBeyondHead) {
		return nil
	}
	return err
}

// recheck judges the records that did not match the operations log up to
// opHead, with every entry logged since and the records as they are now:
// a change made while verification read is in the same transaction as its
// entry, so what still does not match was changed outside loaxa.
func recheck(src RecordSource, suspects []string, add func(record string, entry uint64, format string, args ...any)) error {
	slices.Sort(suspects)
	// Between reading the log and reading a record, the record may change
	// again: a few rounds let such a record settle.
	for range 2 {
		var still []string
		err := recheckOnce(src, suspects, func(record string, _ uint64, _ string, _ ...any) { still = append(still, record) })
		if err != nil || len(still) == 0 {
			return err
		}
		suspects = still
	}
	return recheckOnce(src, suspects, add)
}

func recheckOnce(src RecordSource, suspects []string, add func(record string, entry uint64, format string, args ...any)) error {
	if len(suspects) == 0 {
		return nil
	}
	want := map[string]bool{}
	for _, k := range suspects {
		want[k] = true
	}
	last := map[string]recorded{}
	err := src.Ops(0, func(o broadcast.OpEntry) error {
		for _, r := range o.Records {
			if want[r.Key] {
				last[r.Key] = recorded{r.Hash, o.Seq, o.Action == broadcast.ActionRecordsBaseline}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range suspects {
		h, held, err := src.RecordHash(k)
		if err != nil {
			return err
		}
		l, ok := last[k]
		switch {
		case held && !ok:
			add(k, 0, "no operations-log entry accounts for this record: it was written outside loaxa")
		case held && l.hash != h:
			add(k, l.op, "the record differs from what operations-log entry %d recorded: it was changed outside loaxa", l.op)
		case !held && ok:
			add(k, l.op, "operations-log entry %d recorded this record, but the file no longer holds it", l.op)
		}
	}
	return nil
}

// citation folds a set of as-run entries, so that two sets can be compared
// without keeping them: the entries the log holds for an airing and the
// entries the airing cites.
type citation struct {
	n     int
	xor   uint64
	first uint64
}

func (c *citation) add(seq uint64) {
	if c.n == 0 || seq < c.first {
		c.first = seq
	}
	c.n++
	c.xor ^= seq * 0x9E3779B97F4A7C15 // spread, so that swapped seqs do not cancel out
}

// citedByLog folds, for each airing, the as-run entries after base that
// count for it. On the way it checks the one mark that follows from what
// the hash covers: an entry claiming a moment past its receipt plus p's
// clock skew must be marked future, and one marked future must claim a
// moment past its receipt. (Lowering policy.clock_skew makes entries
// logged under the wider allowance show here.)
func citedByLog(ctx context.Context, src RecordSource, base, head uint64, p broadcast.Policy, bad func(seq uint64, format string, args ...any)) (map[string]citation, error) {
	cited := map[string]citation{}
	n := 0
	strict := p
	strict.ClockSkew = 0
	err := src.AsRun(base, func(e broadcast.AsRunEntry) error {
		if e.Seq > head {
			return errBeyondHead
		}
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if ev, _, err := broadcast.DecodeEventFast(e.Payload); err == nil {
			switch {
			case e.Unmatched == "" && broadcast.Implausible(ev, e.ReceivedAt, p) != "":
				bad(e.Seq, "it claims a moment later than its receipt plus the clock skew allowance, yet counts: it should be marked %q", broadcast.UnmatchedFuture)
			case e.Unmatched == broadcast.UnmatchedFuture && broadcast.Implausible(ev, e.ReceivedAt, strict) == "":
				bad(e.Seq, "it is marked %q but claims no moment later than its receipt", broadcast.UnmatchedFuture)
			}
		}
		if e.Unmatched != "" {
			return nil
		}
		c := cited[e.Airing]
		c.add(e.Seq)
		cited[e.Airing] = c
		return nil
	})
	if errors.Is(err, errBeyondHead) {
		err = nil
	}
	return cited, err
}

// evidenceCheck rebuilds airings' device verdicts from their entries.
type evidenceCheck struct {
	src     RecordSource
	policy  broadcast.Policy
	base    uint64          // the last purged as-run entry
	head    uint64          // the as-run log's last entry when verification began
	legacy  map[string]bool // airings recorded only as found at the upgrade to schema 4
	add     func(record string, entry uint64, format string, args ...any)
	devices map[string][]broadcast.Device // by station
}

func (c *evidenceCheck) check(a *broadcast.Airing, logged citation) error {
	key := broadcast.RecordKey(broadcast.RecordAiring, a.ID)
	legacyCancel := a.Status == broadcast.StatusCancelled && a.CancelledAt.IsZero()
	if legacyCancel && !c.legacy[key] {
		// Only an airing cancelled before cancellation times were kept may
		// lack one: the status is outside the record's hash, its time is
		// not.
		c.add(key, 0, "it is recorded as cancelled, but no cancellation of it was recorded: changed outside loaxa")
	}
	var refs citation
	var seqs []uint64
	seen := map[uint64]bool{}
	for _, d := range a.Devices {
		if d == nil {
			continue
		}
		for _, r := range d.Events {
			if r.Entry > c.head {
				// Logged while verification read: the airing has moved
				// on from the log it was compared with. The next
				// verification judges it.
				return nil
			}
			if r.Entry > c.base { // purged entries are no longer there to cite
				if seen[r.Entry] {
					// With no entry cited twice, and every cited entry
					// checked to be this airing's, the same count means
					// the same entries.
					c.add(key, r.Entry, "it cites as-run entry %d twice", r.Entry)
				}
				seen[r.Entry] = true
				refs.add(r.Entry)
				seqs = append(seqs, r.Entry)
			}
		}
	}
	if refs != logged {
		c.add(key, logged.first, "it cites %d as-run entries, but the log holds %d that count for it", refs.n, logged.n)
	}
	if len(seqs) == 0 && a.Status != broadcast.StatusAired {
		return nil
	}
	entries, err := c.src.AsRunEntriesAt(seqs)
	if err != nil {
		return err
	}

	if legacyCancel {
		// When it was cancelled is not known, so neither is which plays
		// counted: its verdicts cannot be rebuilt.
		return nil
	}
	replay := broadcast.AiringPlan(a)
	replay.Status = broadcast.StatusPlanned
	purged := false
	var lastReceived time.Time
	for _, dev := range slices.Sorted(maps.Keys(a.Devices)) {
		d := a.Devices[dev]
		if d == nil {
			continue
		}
		for _, r := range d.Events {
			if r.Entry <= c.base {
				purged = true
				continue
			}
			e, ok := entries[r.Entry]
			switch {
			case !ok:
				c.add(key, r.Entry, "device %s cites as-run entry %d, which the log does not hold", dev, r.Entry)
				continue
			case e.Airing != a.ID || e.Device != dev || e.Event != r.Event || e.Unmatched != "":
				c.add(key, r.Entry, "device %s cites as-run entry %d, which is not its %s event for this airing", dev, r.Entry, r.Event)
				continue
			}
			ev, _, err := broadcast.DecodeEventFast(e.Payload)
			if err != nil {
				continue // the log's own verification names the payload
			}
			if e.ReceivedAt.After(lastReceived) {
				lastReceived = e.ReceivedAt
			}
			broadcast.ApplyEvent(&replay, dev, ev, e.Seq, 1, c.policy)
		}
	}
	if purged {
		// Part of the evidence is gone by design: what is left cannot
		// rebuild the verdicts.
		return nil
	}

	aired := 0
	for _, dev := range slices.Sorted(maps.Keys(a.Devices)) {
		stored := a.Devices[dev] != nil && a.Devices[dev].Status == broadcast.StatusAired
		rebuilt := replay.Devices[dev] != nil && replay.Devices[dev].Status == broadcast.StatusAired
		switch {
		case stored && !rebuilt:
			c.add(key, 0, "device %s is recorded as having aired it, but its as-run entries do not show an aired play", dev)
		case !stored && rebuilt:
			c.add(key, 0, "device %s's as-run entries show an aired play, but it is recorded as %s", dev, a.Devices[dev].Status)
		}
		if rebuilt {
			aired++
		}
	}
	if aired == 0 && a.Status != broadcast.StatusAired {
		return nil
	}
	// The station's verdict was taken at its last event, against the
	// devices enabled then.
	n, err := c.devicesAt(a.Station, lastReceived)
	if err != nil {
		c.add(key, 0, "the devices of its station cannot be read to judge it: %v", err)
		return nil
	}
	need := broadcast.RequiredDevices(max(n, 1), c.policy)
	switch {
	case a.Status == broadcast.StatusAired && aired < need:
		c.add(key, 0, "it is recorded as aired, but its as-run entries show %d of the %d devices it needed", aired, need)
	case a.Status != broadcast.StatusAired && a.Status != broadcast.StatusCancelled && aired >= need:
		c.add(key, 0, "its as-run entries show %d of the %d devices it needed aired it, but it is recorded as %s", aired, need, a.Status)
	}
	return nil
}

// devicesAt is how many devices of station were enabled at t, by their
// records (IndexProblems holds the station's index to them): registered by
// then, and not yet disabled. A device disabled at an unknown time counts
// as disabled, which asks less of the evidence.
func (c *evidenceCheck) devicesAt(station string, t time.Time) (int, error) {
	ds, ok := c.devices[station]
	if !ok {
		var err error
		if ds, err = c.src.Devices(station); err != nil {
			return 0, fmt.Errorf("devices of station %s: %w", station, err)
		}
		c.devices[station] = ds
	}
	n := 0
	for _, d := range ds {
		if !d.CreatedAt.After(t) && !(d.Disabled && (d.DisabledAt.IsZero() || !d.DisabledAt.After(t))) {
			n++
		}
	}
	return n, nil
}
