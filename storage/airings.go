package storage

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

// Airing records are clustered by due time. Bucket air_due holds each
// record (encodeAiring, codec.go) under start8 id, so that the airings due
// at the same moment (every station's six o'clock replay) sit on a few
// adjacent pages: the burst of events that follows a broadcast dirties
// those pages and their branch pages only, not one page per airing spread
// over the whole file, and the dispatch loop reads what is due in one
// sequential scan. The other buckets find a record's key:
//
//	airings  id → start8                           the record is at start8 id in air_due
//	air_due  start8 id → record                    what is due, across all stations
//	air_sm   station \0 month \0 start8 id → sum   a station's month, in start order,
//	                                               with each airing's summary (summary.go)
//	air_st   station \0 start8 id → nil            a station's schedule for a time window
//	air_prog programme \0 id → start8              a programme's airings
//
// start8 is timeKey(Start); every index key ends in the record's key.

type airingIndex struct {
	bucket     []byte
	key, value []byte
}

// recKey is an airing's key in air_due.
func recKey(start []byte, id string) []byte { return slices.Concat(start, []byte(id)) }

func airingIndexes(a *broadcast.Airing) []airingIndex {
	start := timeKey(a.Start)
	id := []byte(a.ID)
	ix := []airingIndex{
		{bktAirings, id, start},
		{bktAirSM, summaryKey(a), encodeSummary(a.Summary())},
		{bktAirST, slices.Concat(key(a.Station, ""), start, id), nil},
	}
	if a.Programme != "" {
		ix = append(ix, airingIndex{bktAirProg, key(a.Programme, a.ID), start})
	}
	return ix
}

func validateAiring(a *broadcast.Airing) error {
	switch {
	case a == nil:
		return broadcast.Errorf(broadcast.EInvalid, "nil airing")
	case !broadcast.ValidID(a.ID):
		return broadcast.FieldError(broadcast.EInvalid, "id", "airing id %q is not 1-64 characters of [A-Za-z0-9_-]", a.ID)
	case a.Station == "":
		return broadcast.FieldError(broadcast.EInvalid, "station", "airing %s has no station", a.ID)
	case a.Start.IsZero():
		return broadcast.FieldError(broadcast.EInvalid, "start", "airing %s has no start", a.ID)
	}
	return nil
}

// airingKey finds an airing's record key; nil if there is no such airing.
func airingKey(tx *bolt.Tx, id string) []byte {
	start := tx.Bucket(bktAirings).Get([]byte(id))
	if len(start) != 8 {
		return nil
	}
	return recKey(start, id)
}

func getAiring(tx *bolt.Tx, id string) (*broadcast.Airing, error) {
	k := airingKey(tx, id)
	if k == nil {
		return nil, notFound("airing", id)
	}
	return decodeAiring(id, tx.Bucket(bktAirDue).Get(k))
}

// putAiring stores a and moves its record and index entries if old (the
// stored version, or nil) was filed elsewhere. Index entries that old
// already has are not written again: a Put dirties its page even when
// nothing changes, and a status change (the common update) changes no
// index, so that marking a batch of airings due together touches only the
// few air_due pages that hold them.
func (s *Store) putAiring(tx *bolt.Tx, a, old *broadcast.Airing) error {
	due := tx.Bucket(bktAirDue)
	nk := recKey(timeKey(a.Start), a.ID)
	nix := airingIndexes(a)
	var oix []airingIndex
	if old != nil {
		oix = airingIndexes(old)
		if ok := recKey(timeKey(old.Start), old.ID); !bytes.Equal(ok, nk) {
			if err := due.Delete(ok); err != nil {
				return fmt.Errorf("move airing %s: %w", a.ID, err)
			}
		}
		for _, o := range oix {
			if !slices.ContainsFunc(nix, func(n airingIndex) bool {
				return bytes.Equal(n.bucket, o.bucket) && bytes.Equal(n.key, o.key)
			}) {
				if err := tx.Bucket(o.bucket).Delete(o.key); err != nil {
					return fmt.Errorf("unindex airing %s: %w", a.ID, err)
				}
			}
		}
	}
	if err := due.Put(nk, encodeAiring(a)); err != nil {
		return fmt.Errorf("store airing %s: %w", a.ID, err)
	}
	// A change of status alone (marked sent, judged missed) changes no
	// plan and needs no record of its own: the as-run log and the clock
	// account for it.
	if h := airingRecordHash(a); old == nil || airingRecordHash(old) != h {
		s.noteRecord(broadcast.RecordAiring, a.ID, h)
	}
	for _, n := range nix {
		if slices.ContainsFunc(oix, func(o airingIndex) bool {
			return bytes.Equal(n.bucket, o.bucket) && bytes.Equal(n.key, o.key) && bytes.Equal(n.value, o.value)
		}) {
			continue
		}
		if err := tx.Bucket(n.bucket).Put(n.key, n.value); err != nil {
			return fmt.Errorf("index airing %s: %w", a.ID, err)
		}
	}
	return nil
}

// PutAirings inserts or replaces airings in one transaction (callers batch:
// a month's plan for a province is one call) and keeps the indexes in step,
// moving an airing whose start, station, month or programme changed.
//
// A replacement whose Devices is nil keeps the stored Devices: that is the
// evidence AppendEvent gathered, and a planner re-saving its own, older copy
// must not erase it. To change an airing in view of its current state, use
// UpdateAiring, which reads and writes in one transaction.
func (s *Store) PutAirings(ctx context.Context, airings []*broadcast.Airing, op *broadcast.OpEntry) error {
	for _, a := range airings {
		if err := validateAiring(a); err != nil {
			return fmt.Errorf("store airings: %w", err)
		}
	}
	now := s.now()
	err := s.update(ctx, op, func(tx *bolt.Tx) error {
		for _, a := range airings {
			var old *broadcast.Airing
			if k := airingKey(tx, a.ID); k != nil {
				var err error
				if old, err = decodeAiring(a.ID, tx.Bucket(bktAirDue).Get(k)); err != nil {
					return err
				}
			}
			rec := *a
			if rec.CreatedAt.IsZero() {
				rec.CreatedAt = now
				if old != nil {
					rec.CreatedAt = old.CreatedAt
				}
			}
			if rec.Devices == nil && old != nil {
				rec.Devices = old.Devices
			}
			if rec.UpdatedAt.IsZero() {
				rec.UpdatedAt = now
			}
			if err := s.putAiring(tx, &rec, old); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store %d airings: %w", len(airings), err)
	}
	return nil
}

// Airing returns an airing.
func (s *Store) Airing(id string) (*broadcast.Airing, error) {
	var a *broadcast.Airing
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		a, err = getAiring(tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("airing %s: %w", id, err)
	}
	return a, nil
}

// UpdateAiring applies fn to an airing and stores the result, re-indexed if
// fn moved it, in one transaction. An error from fn aborts the transaction
// (no change, no operations-log entry) and is returned as is.
func (s *Store) UpdateAiring(ctx context.Context, id string, fn func(*broadcast.Airing) error, op *broadcast.OpEntry) (*broadcast.Airing, error) {
	var (
		out   *broadcast.Airing
		fnErr error
	)
	err := s.update(ctx, op, func(tx *bolt.Tx) error {
		var err error
		out, err = s.updateAiring(tx, id, fn, &fnErr)
		return err
	})
	if fnErr != nil && err == fnErr {
		return nil, fnErr
	}
	if err != nil {
		return nil, fmt.Errorf("update airing %s: %w", id, err)
	}
	return out, nil
}

// UpdateAirings is UpdateAiring for many airings in one transaction, and
// so one fsync: the dispatch loop marks hundreds of airings sent at once.
// fn is called for each id in order and the airings are returned in that
// order. All or nothing: an unknown id (broadcast.ENotFound), an invalid
// result or an error from fn (returned as is) aborts the whole batch, and
// op is logged only if every airing was stored. An id given twice is
// updated twice, the second call seeing the first's result. No ids: no
// transaction, and op is not logged.
func (s *Store) UpdateAirings(ctx context.Context, ids []string, fn func(*broadcast.Airing) error, op *broadcast.OpEntry) ([]*broadcast.Airing, error) {
	if len(ids) == 0 {
		return nil, ctx.Err()
	}
	var (
		out   []*broadcast.Airing
		fnErr error
	)
	err := s.update(ctx, op, func(tx *bolt.Tx) error {
		out = make([]*broadcast.Airing, 0, len(ids))
		for _, id := range ids {
			a, err := s.updateAiring(tx, id, fn, &fnErr)
			if err != nil {
				if err != fnErr {
					err = fmt.Errorf("airing %s: %w", id, err)
				}
				return err
			}
			out = append(out, a)
		}
		return nil
	})
	if fnErr != nil && err == fnErr {
		return nil, fnErr
	}
	if err != nil {
		return nil, fmt.Errorf("update %d airings: %w", len(ids), err)
	}
	return out, nil
}

// updateAiring is one airing's part of UpdateAiring(s); fn's error is
// returned as is and also set in *fnErr.
func (s *Store) updateAiring(tx *bolt.Tx, id string, fn func(*broadcast.Airing) error, fnErr *error) (*broadcast.Airing, error) {
	old, err := getAiring(tx, id)
	if err != nil {
		return nil, err
	}
	a := cloneAiring(old)
	if err := fn(a); err != nil {
		*fnErr = err
		return nil, err
	}
	if a.ID != id {
		return nil, broadcast.FieldError(broadcast.EInvalid, "id", "an airing's id cannot change (%s to %s)", id, a.ID)
	}
	if err := validateAiring(a); err != nil {
		return nil, err
	}
	a.UpdatedAt = s.now()
	if err := s.putAiring(tx, a, old); err != nil {
		return nil, err
	}
	return a, nil
}

// cloneAiring copies an airing deeply, so that the copy shares no map or
// slice with the original. It runs once per logged event (Appended.Airing),
// so the devices and their event references are each allocated in one
// block; every device's Events is a capacity-clipped window of the block,
// so that appending to one never writes into the next.
func cloneAiring(a *broadcast.Airing) *broadcast.Airing {
	c := *a
	if a.Devices == nil {
		return &c
	}
	c.Devices = make(map[string]*broadcast.DeviceAiring, len(a.Devices))
	nd, ne := 0, 0
	for _, d := range a.Devices {
		if d != nil {
			nd++
			ne += len(d.Events)
		}
	}
	ds := make([]broadcast.DeviceAiring, 0, nd)
	es := make([]broadcast.EventRef, 0, ne)
	for k, d := range a.Devices {
		if d == nil {
			c.Devices[k] = nil
			continue
		}
		ds = append(ds, *d)
		dc := &ds[len(ds)-1]
		if d.Events != nil {
			start := len(es)
			es = append(es, d.Events...)
			dc.Events = es[start:len(es):len(es)]
		}
		c.Devices[k] = dc
	}
	return &c
}

// StationMonthAirings returns a station's airings of a month, by start.
func (s *Store) StationMonthAirings(station string, month broadcast.Month) ([]*broadcast.Airing, error) {
	var out []*broadcast.Airing
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = stationMonth(tx, station, month, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("airings of station %s in %s: %w", station, month, err)
	}
	return out, nil
}

// stationMonth reads one station-month from its index, keeping the airings
// keep accepts (all if keep is nil).
func stationMonth(tx *bolt.Tx, station string, month broadcast.Month, keep func(*broadcast.Airing) bool) ([]*broadcast.Airing, error) {
	prefix := key(station, string(month), "")
	var out []*broadcast.Airing
	due := tx.Bucket(bktAirDue)
	err := scan(tx.Bucket(bktAirSM), prefix, func(k, _ []byte) error {
		rk := k[len(prefix):]
		a, err := decodeAiring(string(rk[8:]), due.Get(rk))
		if err != nil {
			return err
		}
		if keep == nil || keep(a) {
			out = append(out, a)
		}
		return nil
	})
	return out, err
}

// StationAirings returns a station's airings starting in [from, to), by start.
func (s *Store) StationAirings(station string, from, to time.Time) ([]*broadcast.Airing, error) {
	var out []*broadcast.Airing
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = stationWindow(tx, station, from, to, nil, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("airings of station %s from %s to %s: %w", station, from, to, err)
	}
	return out, nil
}

// stationWindow reads a station's airings in [from, to) (to zero: no end)
// from the station-time index, at most limit of them (0: all).
func stationWindow(tx *bolt.Tx, station string, from, to time.Time, keep func(*broadcast.Airing) bool, limit int) ([]*broadcast.Airing, error) {
	prefix := key(station, "")
	var start, end []byte
	if !from.IsZero() {
		start = timeKey(from)
	}
	if !to.IsZero() {
		end = timeKey(to)
	}
	var out []*broadcast.Airing
	due := tx.Bucket(bktAirDue)
	c := tx.Bucket(bktAirST).Cursor()
	for k, _ := c.Seek(slices.Concat(prefix, start)); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
		rk := k[len(prefix):]
		if end != nil && bytes.Compare(rk[:8], end) >= 0 {
			break
		}
		a, err := decodeAiring(string(rk[8:]), due.Get(rk))
		if err != nil {
			return nil, err
		}
		if keep == nil || keep(a) {
			out = append(out, a)
			if limit > 0 && len(out) >= limit {
				break
			}
		}
	}
	return out, nil
}

// dueChunk is how many airings AiringsBetween reads per read transaction.
const dueChunk = 256

// AiringsBetween calls fn, in start order, for every airing of every station
// starting in [from, to), by the due index. It reads in chunks of short read
// transactions and calls fn outside them, so fn may update the airing (a
// read transaction held open across a write in the same goroutine can
// deadlock bbolt when the file grows). fn's error stops the walk and is
// returned.
func (s *Store) AiringsBetween(from, to time.Time, fn func(*broadcast.Airing) error) error {
	seek := timeKey(from)
	end := timeKey(to)
	for {
		var got []*broadcast.Airing
		var last []byte
		err := s.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bktAirDue).Cursor()
			for k, v := c.Seek(seek); k != nil && len(got) < dueChunk; k, v = c.Next() {
				if bytes.Compare(k[:8], end) >= 0 {
					break
				}
				a, err := decodeAiring(string(k[8:]), v)
				if err != nil {
					return err
				}
				got = append(got, a)
				last = k
			}
			if last != nil {
				// The next chunk starts just after the last key seen.
				last = append(slices.Clone(last), 0)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("airings from %s to %s: %w", from, to, err)
		}
		for _, a := range got {
			if err := fn(a); err != nil {
				return err
			}
		}
		if len(got) < dueChunk {
			return nil
		}
		seek = last
	}
}

// ProgrammeAirings returns a programme's airings, by start then id.
func (s *Store) ProgrammeAirings(programme string) ([]*broadcast.Airing, error) {
	var out []*broadcast.Airing
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = programmeAirings(tx, programme, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("airings of programme %s: %w", programme, err)
	}
	return out, nil
}

func programmeAirings(tx *bolt.Tx, programme string, keep func(*broadcast.Airing) bool) ([]*broadcast.Airing, error) {
	prefix := key(programme, "")
	var out []*broadcast.Airing
	due := tx.Bucket(bktAirDue)
	err := scan(tx.Bucket(bktAirProg), prefix, func(k, start []byte) error {
		id := string(k[len(prefix):])
		a, err := decodeAiring(id, due.Get(recKey(start, id)))
		if err != nil {
			return err
		}
		if keep == nil || keep(a) {
			out = append(out, a)
		}
		return nil
	})
	sortAirings(out)
	return out, err
}

func sortAirings(as []*broadcast.Airing) {
	slices.SortStableFunc(as, func(a, b *broadcast.Airing) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}

// AiringFilter selects airings for QueryAirings; zero fields match anything,
// StationPath selects the stations at or below a unit path and Limit is the
// most airings returned (0 for all). It is the domain's type, shared with
// the API.
type AiringFilter = broadcast.AiringFilter

func matchFilter(f AiringFilter, a *broadcast.Airing) bool {
	return (f.Station == "" || a.Station == f.Station) &&
		(f.Programme == "" || a.Programme == f.Programme) &&
		(f.Month == "" || a.Month == f.Month) &&
		(f.Status == "" || a.Status == f.Status)
}

// QueryAirings returns the airings that match f, by start then id, at most
// f.Limit. It reads the narrowest index the filter allows: a programme's
// airings; a station's month; a station's schedule; the stations below a
// path, each by month or schedule; a month, station by station; otherwise
// the due index, which stops as soon as Limit airings matched. Only a
// filter on Status alone has to read every airing.
func (s *Store) QueryAirings(f AiringFilter) ([]*broadcast.Airing, error) {
	var out []*broadcast.Airing
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = s.query(tx, f)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("query airings %+v: %w", f, err)
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

func (s *Store) query(tx *bolt.Tx, f AiringFilter) ([]*broadcast.Airing, error) {
	inPath := func(a *broadcast.Airing) bool { return true }
	if f.StationPath != "" {
		sb := tx.Bucket(bktStations)
		paths := map[string]bool{}
		inPath = func(a *broadcast.Airing) bool {
			in, ok := paths[a.Station]
			if !ok {
				var st broadcast.Station
				if v := sb.Get([]byte(a.Station)); v != nil && json.Unmarshal(v, &st) == nil {
					in = broadcast.Below(st.Path, f.StationPath)
				}
				paths[a.Station] = in
			}
			return in
		}
	}
	keep := func(a *broadcast.Airing) bool { return matchFilter(f, a) && inPath(a) }

	// perStation reads the given stations one by one, by month if the
	// filter has one, and merges them in start order.
	perStation := func(stations [][]byte) ([]*broadcast.Airing, error) {
		var out []*broadcast.Airing
		for _, st := range stations {
			var (
				got []*broadcast.Airing
				err error
			)
			if f.Month != "" {
				got, err = stationMonth(tx, string(st), f.Month, keep)
			} else {
				got, err = stationWindow(tx, string(st), time.Time{}, time.Time{}, keep, 0)
			}
			if err != nil {
				return nil, err
			}
			out = append(out, got...)
		}
		sortAirings(out)
		return out, nil
	}

	switch {
	case f.Programme != "":
		return programmeAirings(tx, f.Programme, keep)
	case f.Station != "" && f.Month != "":
		return stationMonth(tx, f.Station, f.Month, keep)
	case f.Station != "":
		return stationWindow(tx, f.Station, time.Time{}, time.Time{}, keep, f.Limit)
	case f.StationPath != "":
		var ids [][]byte
		err := scanStationIDs(tx, f.StationPath, func(id []byte) error {
			ids = append(ids, slices.Clone(id))
			return nil
		})
		if err != nil {
			return nil, err
		}
		return perStation(ids)
	case f.Month != "":
		return perStation(indexedStations(tx))
	}
	var out []*broadcast.Airing
	c := tx.Bucket(bktAirDue).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		a, err := decodeAiring(string(k[8:]), v)
		if err != nil {
			return nil, err
		}
		if keep(a) {
			out = append(out, a)
			if f.Limit > 0 && len(out) >= f.Limit {
				break
			}
		}
	}
	return out, nil
}

// indexedStations lists the stations that have airings, from the
// station-time index: one seek per station, skipping its airings.
func indexedStations(tx *bolt.Tx) [][]byte {
	var out [][]byte
	c := tx.Bucket(bktAirST).Cursor()
	for k, _ := c.First(); k != nil; {
		i := bytes.IndexByte(k, 0)
		if i < 0 {
			k, _ = c.Next()
			continue
		}
		st := slices.Clone(k[:i])
		out = append(out, st)
		k, _ = c.Seek(append(slices.Clone(st), 1))
	}
	return out
}
