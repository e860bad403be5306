package broadcast

import "time"

// EventRecord is one device event as the daemon received it, on its way into
// the as-run log. The types here are shared by the packages that log events
// (storage) and those that take them in (devices), so neither imports the
// other.
type EventRecord struct {
	Device, Station string
	ReceivedAt      time.Time
	Payload         []byte // the exact MQTT payload
	Event           Event  // parsed from Payload by DecodeEvent
}

// Appended is the outcome of logging an event.
type Appended struct {
	Entry     AsRunEntry // the logged entry; for a duplicate, the one logged first
	Duplicate bool       // (device, seq) was already logged: nothing new was written
	Airing    *Airing    // the airing after ApplyEvent
	UptoSeq   uint64     // every seq 1..UptoSeq of this device is logged
	UptoHash  Hash       // chain hash of the entry holding (device, UptoSeq)
}

// DeviceSeqState is what the as-run log holds of one device's event seqs.
type DeviceSeqState struct {
	Upto, Max    uint64 // every seq 1..Upto is logged; Max is the highest logged
	LastReceived time.Time
	UptoHash     Hash // chain hash of the entry holding (device, Upto)
}

// ImportResult is what an import of units created and what exists after it.
type ImportResult struct {
	UnitsCreated    int `json:"units_created"`
	StationsCreated int `json:"stations_created"`
	// UnitsUpdated and StationsUpdated count the records that existed and
	// changed (renamed, moved): an import that rewrote names is not "no
	// change".
	UnitsUpdated    int `json:"units_updated"`
	StationsUpdated int `json:"stations_updated"`
	UnitsTotal      int `json:"units"`
	StationsTotal   int `json:"stations"`
}

// PurgeResult is what a purge of the as-run log removed.
type PurgeResult struct {
	Upto       uint64 `json:"asrun_upto"` // the last purged entry
	UptoHash   Hash   `json:"asrun_hash"`
	Entries    int    `json:"entries_removed"`
	IndexPairs int    `json:"index_removed"` // where old device seqs were logged
}
