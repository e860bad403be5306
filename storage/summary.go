package storage

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

// A compliance report reads station-months, a national year 120,564 of
// them. Decoding every airing with its devices and events, each found
// through a second lookup in air_due, cost 9–21 µs a station-month, too
// slow for a year's report; so the value of an airing's air_sm entry is its
// summary (broadcast.AiringSummary), rewritten by putAiring in the
// transaction that changes the airing, and a station-month is one seek and
// a few small values:
//
//	version | ID | sym Kind | time Start | rel NotAfter | sym Status | sym Reason |
//	Aired | n | n × Entry delta | m | m × (sym Reason, Devices)
//
// (codec.go's primitives; rel is seconds from Start).
const summaryVersion = 1

func encodeSummary(s broadcast.AiringSummary) []byte {
	e := enc{b: make([]byte, 0, 48+len(s.ID)+3*len(s.Entries))}
	e.b = append(e.b, summaryVersion)
	e.str(s.ID)
	e.sym(string(s.Kind))
	e.time(s.Start)
	e.rel(s.NotAfter, s.Start)
	e.sym(string(s.Status))
	e.sym(s.Reason)
	e.uint(uint64(s.Aired))
	e.uint(uint64(len(s.Entries)))
	var prev uint64
	for _, n := range s.Entries { // ascending: small deltas
		e.uint(n - prev)
		prev = n
	}
	e.uint(uint64(len(s.Causes)))
	for _, c := range s.Causes {
		e.sym(c.Reason)
		e.uint(uint64(c.Devices))
	}
	return e.b
}

func decodeSummary(v []byte) (broadcast.AiringSummary, error) {
	if len(v) == 0 || v[0] != summaryVersion {
		return broadcast.AiringSummary{}, fmt.Errorf("airing summary: %w: version %v", errCorrupt, v[:min(1, len(v))])
	}
	d := dec{b: v[1:]}
	var s broadcast.AiringSummary
	s.ID = d.str()
	s.Kind = broadcast.Kind(d.symbol())
	s.Start = d.time()
	s.NotAfter = d.rel(s.Start)
	s.Status = broadcast.Status(d.symbol())
	s.Reason = d.symbol()
	s.Aired = int(d.uint())
	// Each count is bounded by what is left of the value (an entry is at
	// least one byte), so that a corrupt count cannot ask for a huge slice.
	if n := d.uint(); n > 0 && d.err == nil {
		if n > uint64(len(d.b)) {
			return s, fmt.Errorf("airing summary %s: %w: %d entries in %d bytes", s.ID, errCorrupt, n, len(d.b))
		}
		s.Entries = make([]uint64, n)
		var prev uint64
		for i := range s.Entries {
			prev += d.uint()
			s.Entries[i] = prev
		}
	}
	if n := d.uint(); n > 0 && d.err == nil {
		if n > uint64(len(d.b)) {
			return s, fmt.Errorf("airing summary %s: %w: %d causes in %d bytes", s.ID, errCorrupt, n, len(d.b))
		}
		s.Causes = make([]broadcast.Cause, n)
		for i := range s.Causes {
			s.Causes[i] = broadcast.Cause{Reason: d.symbol(), Devices: int(d.uint())}
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errCorrupt
	}
	if d.err != nil {
		return s, fmt.Errorf("airing summary %s: %w", s.ID, d.err)
	}
	return s, nil
}

// summaryKey is an airing's key in air_sm.
func summaryKey(a *broadcast.Airing) []byte {
	return slices.Concat(key(a.Station, string(a.Month), ""), timeKey(a.Start), []byte(a.ID))
}

// putSummary rewrites a's summary, for the writer of events that changes
// airings in place (asrun.go).
func putSummary(sm *bolt.Bucket, a *broadcast.Airing) error {
	if err := sm.Put(summaryKey(a), encodeSummary(a.Summary())); err != nil {
		return fmt.Errorf("store the summary of airing %s: %w", a.ID, err)
	}
	return nil
}

// StationMonthSummaries returns the summaries of a station's airings of a
// month, by start.
func (s *Store) StationMonthSummaries(station string, month broadcast.Month) ([]broadcast.AiringSummary, error) {
	var out []broadcast.AiringSummary
	err := s.StationMonths([]string{station}, []broadcast.Month{month}, func(_ string, _ broadcast.Month, sums []broadcast.AiringSummary, _ int) error {
		out = slices.Clone(sums)
		return nil
	})
	return out, err
}

// StationMonths reads, in one transaction, the summaries of every station
// of stations in every month of months, with each station's count of
// enabled devices: what a compliance report of any size needs from
// storage. fn is called for each station in turn and, within it, for each
// month in the order given, also when the station-month has no airing. fn
// must not keep the summaries slice, which the next call reuses (what its
// elements point to is fn's).
func (s *Store) StationMonths(stations []string, months []broadcast.Month, fn func(station string, month broadcast.Month, summaries []broadcast.AiringSummary, enabledDevices int) error) error {
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bktAirSM).Cursor()
		// A station's months are adjacent in air_sm: with months in
		// order (a Period's are), one seek a station and a walk, rather
		// than a seek from the root for each of 120,564 station-months.
		ordered := slices.IsSorted(months)
		var buf []broadcast.AiringSummary
		for _, st := range stations {
			enabled := enabledDevices(tx, st)
			var k, v []byte
			if ordered && len(months) > 0 {
				k, v = c.Seek(key(st, string(months[0]), ""))
			}
			for _, m := range months {
				prefix := key(st, string(m), "")
				if ordered {
					for k != nil && bytes.Compare(k, prefix) < 0 {
						k, v = c.Next()
					}
				} else {
					k, v = c.Seek(prefix)
				}
				buf = buf[:0]
				for ; k != nil && hasPrefix(k, prefix); k, v = c.Next() {
					sum, err := decodeSummary(v)
					if err != nil {
						return fmt.Errorf("station %s in %s: %w", st, m, err)
					}
					buf = append(buf, sum)
				}
				if err := fn(st, m, buf, enabled); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("station-months: %w", err)
	}
	return nil
}

// migrateSummaries upgrades a schema 2 file, whose air_sm entries had no
// value, by writing every airing's summary.
func migrateSummaries(tx *bolt.Tx) (int, error) {
	due, sm := tx.Bucket(bktAirDue), tx.Bucket(bktAirSM)
	n := 0
	err := due.ForEach(func(k, v []byte) error {
		if len(k) < 8 {
			return fmt.Errorf("airing key %x: %w", k, errCorrupt)
		}
		a, err := decodeAiring(string(k[8:]), v)
		if err != nil {
			return err
		}
		for _, ix := range airingIndexes(a) {
			if string(ix.bucket) == string(bktAirSM) {
				if err := sm.Put(ix.key, ix.value); err != nil {
					return fmt.Errorf("airing %s: %w", a.ID, err)
				}
			}
		}
		n++
		return nil
	})
	return n, err
}
