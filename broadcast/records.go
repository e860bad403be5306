package broadcast

import (
	"encoding/binary"
	"slices"
	"strings"
)

// The records a report is computed from (units, stations, devices and their
// keys, programmes, airings) live in the database beside the logs. A change
// to one is written in the same transaction as an operations-log entry that
// carries the record's new content hash (OpEntry.Records), so that the
// chain vouches for every record as it was last written, and a verifier
// that re-hashes the records names any that no entry accounts for: a byte
// changed in the file, a device key swapped by hand.

// Record kinds, the first part of a RecordHash's key.
const (
	RecordUnit      = "unit"
	RecordStation   = "station"
	RecordDevice    = "device"
	RecordProgramme = "programme"
	RecordAiring    = "airing"
)

// The operations-log actions that exist only to carry records.
const (
	// ActionRecords is the entry of a change that had no entry of its own
	// (the scheduler planning airings); its Records say what changed.
	ActionRecords = "records.write"
	// ActionRecordsBaseline covers, at the upgrade to schema 4, the records
	// written before entries carried record hashes: what the file held
	// then is vouched for from then on.
	ActionRecordsBaseline = "records.baseline"
)

// RecordHash is the content hash of one record as a change left it. Key is
// kind/id ("programme/01J…", "unit/380").
type RecordHash struct {
	Key  string `json:"key"`
	Hash Hash   `json:"hash"`
}

// RecordKey is the key of the record of a kind with an id.
func RecordKey(kind, id string) string { return kind + "/" + id }

// SplitRecordKey is RecordKey's inverse.
func SplitRecordKey(key string) (kind, id string) {
	kind, id, _ = strings.Cut(key, "/")
	return kind, id
}

// HashRecord is the content hash of a record stored as bytes: the kind, the
// id and the exact bytes, length-prefixed.
func HashRecord(kind, id string, stored []byte) Hash {
	return contentHash([]byte(kind), []byte(id), stored)
}

// AiringPlan is the part of an airing that operators and the scheduler
// decide, which its record hash covers: everything but what the devices'
// events change (Status, Reason, Devices, UpdatedAt). Those follow from the
// as-run log, which has its own chain, and a verifier rebuilds them from it
// instead. A cancellation is covered through CancelledAt.
func AiringPlan(a *Airing) Airing {
	return Airing{
		ID: a.ID, Programme: a.Programme, Station: a.Station, Month: a.Month, Kind: a.Kind,
		Priority: a.Priority, Title: a.Title, Audio: a.Audio, Start: a.Start.UTC(), NotAfter: a.NotAfter.UTC(),
		Replaces: a.Replaces, CancelledAt: a.CancelledAt.UTC(),
	}
}

// recordsBytes is what an operations entry's hash covers of its records.
func recordsBytes(rs []RecordHash) []byte {
	b := make([]byte, 0, len(rs)*(8+24+32)+len("records"))
	b = append(b, "records"...)
	for _, r := range rs {
		b = binary.BigEndian.AppendUint64(b, uint64(len(r.Key)))
		b = append(b, r.Key...)
		b = append(b, r.Hash[:]...)
	}
	return b
}

// SortRecords orders records by key, the order an entry lists them in.
func SortRecords(rs []RecordHash) {
	slices.SortFunc(rs, func(a, b RecordHash) int { return strings.Compare(a.Key, b.Key) })
}

// AiringCheck is an airing as a verifier reads it from the store, with
// whether the summary that reports are computed from is the airing's own.
type AiringCheck struct {
	ID     string
	Airing *Airing // nil when the record does not decode (Corrupt)
	// SummaryOK is false when the store holds no summary for the airing,
	// or one that differs from what the airing says.
	SummaryOK bool
	Corrupt   error
}
