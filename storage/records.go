package storage

import (
	"fmt"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

// Every write of a record that reports depend on notes the record's new
// content hash (broadcast/records.go) while its transaction runs; update
// puts the notes in the operations-log entry it appends in the same
// transaction, or appends one of its own (broadcast.ActionRecords) when the caller
// gave none, so that no such record changes without the chain saying what
// it became.

// recordNotes are the records one write transaction changed, last hash
// wins.
type recordNotes struct {
	list []broadcast.RecordHash
	at   map[string]int
}

func (n *recordNotes) note(key string, h broadcast.Hash) {
	if i, ok := n.at[key]; ok {
		n.list[i].Hash = h
		return
	}
	if n.at == nil {
		n.at = map[string]int{}
	}
	n.at[key] = len(n.list)
	n.list = append(n.list, broadcast.RecordHash{Key: key, Hash: h})
}

// noteRecord notes a record written in the running write transaction.
// Called outside update (no notes are kept), it is a programming error
// caught by the tests: a covered record written without an entry.
func (s *Store) noteRecord(kind, id string, h broadcast.Hash) {
	if s.notes == nil {
		panic(fmt.Sprintf("storage: record %s/%s written outside update", kind, id))
	}
	s.notes.note(broadcast.RecordKey(kind, id), h)
}

// withRecords returns the entry to append for a transaction whose notes
// are n: op with the records, a records.write entry if op is nil, or op
// itself (possibly nil) when nothing covered changed.
func withRecords(op *broadcast.OpEntry, n *recordNotes) *broadcast.OpEntry {
	if len(n.list) == 0 {
		return op
	}
	var e broadcast.OpEntry
	if op != nil {
		e = *op
	} else {
		e = broadcast.OpEntry{Actor: "system", Action: broadcast.ActionRecords, Subject: fmt.Sprintf("%d records", len(n.list))}
	}
	e.Records = append([]broadcast.RecordHash(nil), n.list...)
	broadcast.SortRecords(e.Records)
	return &e
}

// airingRecordHash is what an airing's record hash covers: its plan
// (broadcast.AiringPlan), in the codec's deterministic form.
func airingRecordHash(a *broadcast.Airing) broadcast.Hash {
	plan := broadcast.AiringPlan(a)
	return broadcast.HashRecord(broadcast.RecordAiring, a.ID, encodeAiring(&plan))
}

// coveredBuckets are the buckets of the covered records, by kind.
var coveredBuckets = []struct {
	kind   string
	bucket []byte
}{
	{broadcast.RecordUnit, bktUnits}, {broadcast.RecordStation, bktStations},
	{broadcast.RecordDevice, bktDevices}, {broadcast.RecordProgramme, bktProgrammes},
	{broadcast.RecordAiring, bktAirDue},
}

// baselineBatch bounds the records one baseline entry lists (about 1 MB of
// JSON), so that no entry of the log is unreasonably large.
const baselineBatch = 10000

// migrateRecordBaseline covers the records a file holds when it is
// upgraded to schema 4, written before entries carried record hashes, with
// records.baseline entries. It returns how many records it covered.
func (s *Store) migrateRecordBaseline(tx *bolt.Tx) (int, error) {
	var batch []broadcast.RecordHash
	n := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		broadcast.SortRecords(batch)
		op := broadcast.OpEntry{Actor: "system", Action: broadcast.ActionRecordsBaseline,
			Subject: fmt.Sprintf("%d records as found at the upgrade to schema 4", len(batch)), Records: batch}
		if _, err := s.appendOp(tx, op); err != nil {
			return err
		}
		n += len(batch)
		batch = nil
		return nil
	}
	for _, c := range coveredBuckets {
		err := tx.Bucket(c.bucket).ForEach(func(k, v []byte) error {
			batch = append(batch, recordHash(c.kind, k, v))
			if len(batch) == baselineBatch {
				return flush()
			}
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("cover %s records: %w", c.kind, err)
		}
	}
	return n, flush()
}

// RecordHashes calls fn with the key and current content hash of every
// covered record, reading in chunks of short transactions as AsRun does.
// What cannot be decoded is given the hash of its bytes all the same (an
// airing's whole record): a verifier then names it as not matching.
func (s *Store) RecordHashes(fn func(broadcast.RecordHash) error) error {
	for _, kind := range coveredBuckets {
		var after []byte
		for {
			var got []broadcast.RecordHash
			err := s.view(func(tx *bolt.Tx) error {
				c := tx.Bucket(kind.bucket).Cursor()
				k, v := c.First()
				if after != nil {
					if k, v = c.Seek(after); k != nil && string(k) == string(after) {
						k, v = c.Next()
					}
				}
				for ; k != nil && len(got) < chunk; k, v = c.Next() {
					got = append(got, recordHash(kind.kind, k, v))
					after = append(after[:0], k...)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("read %s records: %w", kind.kind, err)
			}
			for _, r := range got {
				if err := fn(r); err != nil {
					return err
				}
			}
			if len(got) < chunk {
				break
			}
		}
	}
	return nil
}

// RecordHash is the current content hash of the record with key
// ("programme/01J…"), and whether the file holds it.
func (s *Store) RecordHash(key string) (broadcast.Hash, bool, error) {
	kind, id := broadcast.SplitRecordKey(key)
	var (
		h  broadcast.Hash
		ok bool
	)
	err := s.view(func(tx *bolt.Tx) error {
		var k, v []byte
		switch kind {
		case broadcast.RecordAiring:
			if k = airingKey(tx, id); k != nil {
				v = tx.Bucket(bktAirDue).Get(k)
			}
		default:
			for _, c := range coveredBuckets {
				if c.kind == kind {
					k = []byte(id)
					v = tx.Bucket(c.bucket).Get(k)
				}
			}
		}
		if v != nil {
			h, ok = recordHash(kind, k, v).Hash, true
		}
		return nil
	})
	if err != nil {
		return h, false, fmt.Errorf("record %s: %w", key, err)
	}
	return h, ok, nil
}

func recordHash(kind string, k, v []byte) broadcast.RecordHash {
	if kind != broadcast.RecordAiring {
		return broadcast.RecordHash{Key: broadcast.RecordKey(kind, string(k)), Hash: broadcast.HashRecord(kind, string(k), v)}
	}
	// air_due's key is start8 id.
	id := string(k[min(8, len(k)):])
	a, err := decodeAiring(id, v)
	if err != nil || a.ID != id {
		return broadcast.RecordHash{Key: broadcast.RecordKey(kind, id), Hash: broadcast.HashRecord(kind, id, v)}
	}
	return broadcast.RecordHash{Key: broadcast.RecordKey(kind, id), Hash: airingRecordHash(a)}
}

// EachAiring calls fn for every airing, in due order, in chunks of short
// read transactions as AsRun does.
func (s *Store) EachAiring(fn func(broadcast.AiringCheck) error) error {
	var after []byte
	for {
		var got []broadcast.AiringCheck
		err := s.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bktAirDue).Cursor()
			sm := tx.Bucket(bktAirSM)
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); k != nil && string(k) == string(after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(got) < chunk; k, v = c.Next() {
				id := string(k[min(8, len(k)):])
				after = append(after[:0], k...)
				a, err := decodeAiring(id, v)
				if err != nil {
					got = append(got, broadcast.AiringCheck{ID: id, Corrupt: err})
					continue
				}
				stored := sm.Get(summaryKey(a))
				got = append(got, broadcast.AiringCheck{ID: id, Airing: a, SummaryOK: stored != nil && string(stored) == string(encodeSummary(a.Summary()))})
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read airings: %w", err)
		}
		for _, a := range got {
			if err := fn(a); err != nil {
				return err
			}
		}
		if len(got) < chunk {
			return nil
		}
	}
}

// AsRunEntriesAt returns the as-run entries with the given sequence
// numbers that the log holds, by seq; the others are absent from the map.
func (s *Store) AsRunEntriesAt(seqs []uint64) (map[uint64]broadcast.AsRunEntry, error) {
	out := make(map[uint64]broadcast.AsRunEntry, len(seqs))
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktAsRun)
		for _, n := range seqs {
			v := b.Get(u64(n))
			if v == nil {
				continue
			}
			e, err := decodeEntry(v)
			if err != nil {
				return fmt.Errorf("as-run entry %d: %w", n, err)
			}
			out[n] = e
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read as-run entries: %w", err)
	}
	return out, nil
}

// IndexProblems calls fn with each derived entry that its record does not
// account for, as (record key, what is wrong): a summary in air_sm with no
// airing behind it at that station, month and start (reports count
// summaries, so a summary added by hand would count), and a device whose
// entry in station_devs is missing, extra or flagged other than its record
// says (the count of a station's enabled devices comes from there). The
// records themselves are covered by their hashes; these are not, so they
// are checked against them.
func (s *Store) IndexProblems(fn func(record, problem string) error) error {
	var problems [][2]string
	err := s.view(func(tx *bolt.Tx) error {
		err := tx.Bucket(bktAirSM).ForEach(func(k, _ []byte) error {
			if len(k) < 8 {
				problems = append(problems, [2]string{"summary/" + string(k), "a summary whose key is not a station, month, start and airing"})
				return nil
			}
			// station \0 month \0 start8 id: the id follows the second 0
			// and the 8 bytes of the start.
			rest := afterZero(afterZero(k))
			if len(rest) < 8 {
				problems = append(problems, [2]string{"summary/" + string(k), "a summary whose key is not a station, month, start and airing"})
				return nil
			}
			id := string(rest[8:])
			a, err := getAiring(tx, id)
			if err != nil || string(summaryKey(a)) != string(k) {
				problems = append(problems, [2]string{broadcast.RecordKey(broadcast.RecordAiring, id), "a summary, which reports count, stands for it where the airing is not: added or moved outside loaxa"})
			}
			return nil
		})
		if err != nil {
			return err
		}
		idx, db := tx.Bucket(bktStationDevs), tx.Bucket(bktDevices)
		err = db.ForEach(func(k, v []byte) error {
			d, err := decodeDevice(v)
			if err != nil {
				return nil // its record hash names it
			}
			if got := idx.Get(key(d.Station, d.ID)); got == nil || string(got) != string(enabledFlag(d)) {
				problems = append(problems, [2]string{broadcast.RecordKey(broadcast.RecordDevice, string(k)), "its station's index of devices does not list it as its record says (enabled or disabled): changed outside loaxa"})
			}
			return nil
		})
		if err != nil {
			return err
		}
		return idx.ForEach(func(k, _ []byte) error {
			id := afterZero(k)
			v := db.Get(id)
			if v == nil {
				problems = append(problems, [2]string{broadcast.RecordKey(broadcast.RecordDevice, string(id)), "its station's index of devices lists it, but there is no such device"})
				return nil
			}
			if d, err := decodeDevice(v); err == nil && string(key(d.Station, d.ID)) != string(k) {
				problems = append(problems, [2]string{broadcast.RecordKey(broadcast.RecordDevice, string(id)), "the index of another station's devices lists it"})
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("check indexes: %w", err)
	}
	for _, p := range problems {
		if err := fn(p[0], p[1]); err != nil {
			return err
		}
	}
	return nil
}
