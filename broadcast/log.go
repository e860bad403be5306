package broadcast

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"time"
)

// Hash is a link of a hash chain.
type Hash [32]byte

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the chain's genesis (no entry before).
func (h Hash) IsZero() bool { return h == Hash{} }

// MarshalText renders a hash as hex in JSON.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText parses a hex hash.
func (h *Hash) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*h = Hash{}
		return nil
	}
	if len(b) != 64 {
		return Errorf(EMalformed, "hash %q is not 64 hex digits", b)
	}
	_, err := hex.Decode(h[:], b)
	return err
}

// AsRunEntry is one event as the daemon logged it: the exact payload the
// device sent (so that its signature can be checked later, by anyone), when
// the daemon received it, and its link in the chain.
type AsRunEntry struct {
	Seq        uint64    `json:"seq"`
	ReceivedAt time.Time `json:"received_at"`
	Device     string    `json:"device"`
	Station    string    `json:"station"`
	Airing     string    `json:"airing"`
	DeviceSeq  uint64    `json:"device_seq"`
	Event      EventType `json:"event"`
	Payload    []byte    `json:"payload"`
	// Unmatched says why the event counts for no airing (UnmatchedUnknownAiring,
	// UnmatchedOtherStation, UnmatchedFuture); "" for the events that count. It records what
	// the daemon found when it logged the entry (the airings it knew then),
	// for the reader's information: the hash does not cover it, and the
	// evidence is the payload, which names the airing.
	Unmatched string `json:"unmatched,omitempty"`
	PrevHash  Hash   `json:"prev_hash"`
	Hash      Hash   `json:"hash"`
}

// Why an authentic event was logged but counts for no airing.
const (
	UnmatchedUnknownAiring = "unknown_airing" // no airing has its id
	UnmatchedOtherStation  = "other_station"  // the airing is another station's
	// UnmatchedFuture: the event claims a moment later than its receipt
	// plus the clock skew allowance (Implausible). Unlike the other two it
	// follows from what the hash covers (received_at and the payload), so a
	// verifier recomputes it.
	UnmatchedFuture = "future"
)

// ChainHash is the hash of an as-run entry in the first form (HashForm1):
// it covers everything the entry asserts: position, time of receipt, the
// device and the exact bytes it sent. Station, airing and event are derived
// from the payload and the device registry, so they need no cover of their
// own.
func (e *AsRunEntry) ChainHash() Hash {
	return chain(e.PrevHash, e.Seq, e.ReceivedAt, []byte(e.Device), e.Payload)
}

// ContentHash is what the second hash form (HashForm2) chains over in place
// of the device and the payload: their hash. An evidence bundle of one unit
// gives another unit's entry as its content hash alone, and its chain still
// verifies. The payload carries the device's signature, so the hash cannot
// be guessed from the few devices and airings a station has.
func (e *AsRunEntry) ContentHash() Hash {
	return contentHash([]byte(e.Device), e.Payload)
}

// ChainHashIn is the entry's chain hash in the form forms gives its seq.
func (e *AsRunEntry) ChainHashIn(forms HashForms) Hash {
	if forms.AsRun(e.Seq) == HashForm2 {
		return ChainHash2(e.PrevHash, e.Seq, e.ReceivedAt, e.ContentHash())
	}
	return e.ChainHash()
}

// ChainHash2 is the second form of a chain hash, over an entry's content
// hash: H(prev ‖ seq ‖ time ‖ content). The as-run and the operations log
// share it.
func ChainHash2(prev Hash, seq uint64, at time.Time, content Hash) Hash {
	return chain(prev, seq, at, content[:])
}

// Hash forms of the logs' entries. HashForm1 covers the entry's fields
// themselves; HashForm2 their hash (ContentHash), so that an entry can be
// shown as that hash alone and still be chained.
const (
	HashForm1 = 1
	HashForm2 = 2
)

// HashForms says from which entry on each log uses HashForm2: the
// switch-over, recorded once in the store's meta bucket and in the
// operations log (action ActionHashForms). 0 means never: the whole log is
// in HashForm1 (a bundle made before the second form existed).
type HashForms struct {
	AsRunFrom uint64 `json:"asrun_from"`
	OplogFrom uint64 `json:"oplog_from"`
}

// ActionHashForms is the operations-log action that records the switch-over
// to HashForm2; its detail is the HashForms.
const ActionHashForms = "log.hash_form"

// AsRun is the form of as-run entry seq.
func (f HashForms) AsRun(seq uint64) int { return formAt(f.AsRunFrom, seq) }

// Oplog is the form of operations-log entry seq.
func (f HashForms) Oplog(seq uint64) int { return formAt(f.OplogFrom, seq) }

func formAt(from, seq uint64) int {
	if from != 0 && seq >= from {
		return HashForm2
	}
	return HashForm1
}

// OpEntry is one change an operator made: who, when, what, to what.
type OpEntry struct {
	Seq     uint64    `json:"seq"`
	At      time.Time `json:"at"`
	Actor   string    `json:"actor"`  // token id and name, "system" for the daemon itself
	Action  string    `json:"action"` // programme.upload, programme.approve, airing.move, token.create…
	Subject string    `json:"subject"`
	Detail  []byte    `json:"detail,omitempty"` // JSON, exact bytes as hashed
	// Unit is the path of the unit the change belongs to ("38/380/14755"),
	// so that an auditor of a district reads the district's changes only;
	// "" for what belongs to the whole tree (a unit import, a seal) and for
	// entries older than the field.
	Unit string `json:"unit,omitempty"`
	// Records are the content hashes of the records the change left
	// (records.go), in key order; none for a change of no such record.
	Records  []RecordHash `json:"records,omitempty"`
	PrevHash Hash         `json:"prev_hash"`
	Hash     Hash         `json:"hash"`
}

// ChainHash is the hash of an operations log entry in HashForm1.
func (o *OpEntry) ChainHash() Hash {
	return chain(o.PrevHash, o.Seq, o.At, o.fields()...)
}

// fields are what an entry's hash covers besides its position and time.
// Unit and Records are covered only when set, so that the entries written
// before them keep their hashes; the length prefixes keep an entry with more
// fields apart from every entry with fewer.
func (o *OpEntry) fields() [][]byte {
	f := [][]byte{[]byte(o.Actor), []byte(o.Action), []byte(o.Subject), o.Detail}
	if len(o.Records) > 0 {
		return append(f, []byte(o.Unit), recordsBytes(o.Records))
	}
	if o.Unit != "" {
		f = append(f, []byte(o.Unit))
	}
	return f
}

// ContentHash is the hash of what an entry says (HashForm2 chains over it).
func (o *OpEntry) ContentHash() Hash { return contentHash(o.fields()...) }

// ChainHashIn is the entry's chain hash in the form forms gives its seq.
func (o *OpEntry) ChainHashIn(forms HashForms) Hash {
	if forms.Oplog(o.Seq) == HashForm2 {
		return ChainHash2(o.PrevHash, o.Seq, o.At, o.ContentHash())
	}
	return o.ChainHash()
}

// contentHash hashes fields with length prefixes, as chain does.
func contentHash(fields ...[]byte) Hash { return sumFields(sha256.New(), fields) }

// sumFields writes each field after its length to h and returns the sum.
func sumFields(h hash.Hash, fields [][]byte) Hash {
	var n [8]byte
	for _, f := range fields {
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write(f)
	}
	var out Hash
	h.Sum(out[:0])
	return out
}

// chain hashes fields with length prefixes, so that no two different entries
// can be cut into the same byte stream.
func chain(prev Hash, seq uint64, at time.Time, fields ...[]byte) Hash {
	h := sha256.New()
	var n [8]byte
	h.Write(prev[:])
	binary.BigEndian.PutUint64(n[:], seq)
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(at.UnixNano()))
	h.Write(n[:])
	return sumFields(h, fields)
}
