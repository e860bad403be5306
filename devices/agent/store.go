package agent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// The agent's bbolt file, data_dir/agent.db. Every change is one transaction,
// and bbolt fsyncs each commit: the agent acts (publishes, plays, deletes a
// file) only after the state that explains the act is on disk, so that a
// power cut at any instant leaves a state it can resume from without losing
// or repeating evidence.
//
//	meta     snapshot   the snapshot with the highest rev seen (JSON)
//	         adhoc      play_now items not yet done (JSON)
//	         next_seq   the seq the next event takes (uint64)
//	         receipt    upto_seq and log_hash of the last receipt (JSON)
//	         playing    the airing being played, written with its started event
//	outbox   seq → the exact envelope published; deleted by receipts
//	emitted  airing/mark → when it was set, and the seq of its event
//	cache    sha256 → size and time of the audio file in data_dir/audio
var (
	bucketMeta    = []byte("meta")
	bucketOutbox  = []byte("outbox")
	bucketEmitted = []byte("emitted")
	bucketCache   = []byte("cache")

	keySnapshot = []byte("snapshot")
	keyAdhoc    = []byte("adhoc")
	keyNextSeq  = []byte("next_seq")
	keyReceipt  = []byte("receipt")
	keyPlaying  = []byte("playing")
)

// Marks in the emitted bucket. An event's mark is its type, or
// "failed:<reason>" for failures, since one airing may fail first for a
// checksum and be aired later; "done" says that nothing more happens to it.
const markDone = "done"

func markOf(ev broadcast.EventType, reason string) string {
	if ev == broadcast.EventFailed {
		return string(ev) + ":" + reason
	}
	return string(ev)
}

type adhocItem struct {
	Item  broadcast.Item `json:"item"`
	Order uint64         `json:"order"` // later play_now commands outrank earlier ones
}

type receiptState struct {
	UptoSeq uint64 `json:"upto_seq"`
	LogHash string `json:"log_hash"`
}

// playRecord is written in the same transaction as a started event and
// deleted in the one that ends the airing; one left behind at start-up means
// the agent died mid-broadcast.
type playRecord struct {
	Airing    string    `json:"airing"`
	StartedAt time.Time `json:"started_at"`
	SHA256    string    `json:"sha256"`
}

type cacheEntry struct {
	Size   int64     `json:"size"`
	Stored time.Time `json:"stored"`
}

type emittedMark struct {
	At  time.Time
	Seq uint64
}

// persisted is everything loaded at start-up.
type persisted struct {
	snap     broadcast.Snapshot
	adhoc    []adhocItem
	nextSeq  uint64
	receipt  receiptState
	playing  *playRecord
	emitted  map[string]map[string]emittedMark
	cache    map[string]cacheEntry
	outboxN  int
	outboxLo uint64 // lowest seq in the outbox, 0 if empty
}

type store struct {
	db *bolt.DB
}

func openStore(path string, noSync bool) (*store, error) {
	// Without a timeout bbolt waits forever for the file lock; a second agent
	// on the same data_dir must fail at once instead.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: noSync})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open %s: another agent holds it (one agent per data_dir)", path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketOutbox, bucketEmitted, bucketCache} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("init %s: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

func (s *store) load() (persisted, error) {
	p := persisted{
		nextSeq: 1,
		emitted: map[string]map[string]emittedMark{},
		cache:   map[string]cacheEntry{},
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keySnapshot); v != nil {
			if err := json.Unmarshal(v, &p.snap); err != nil {
				return fmt.Errorf("stored snapshot: %w", err)
			}
		}
		if v := meta.Get(keyAdhoc); v != nil {
			if err := json.Unmarshal(v, &p.adhoc); err != nil {
				return fmt.Errorf("stored play_now items: %w", err)
			}
		}
		if v := meta.Get(keyNextSeq); len(v) == 8 {
			p.nextSeq = binary.BigEndian.Uint64(v)
		}
		if v := meta.Get(keyReceipt); v != nil {
			if err := json.Unmarshal(v, &p.receipt); err != nil {
				return fmt.Errorf("stored receipt: %w", err)
			}
		}
		if v := meta.Get(keyPlaying); v != nil {
			p.playing = new(playRecord)
			if err := json.Unmarshal(v, p.playing); err != nil {
				return fmt.Errorf("stored playing record: %w", err)
			}
		}
		err := tx.Bucket(bucketEmitted).ForEach(func(k, v []byte) error {
			airing, mark, ok := strings.Cut(string(k), "/")
			if !ok || len(v) != 16 {
				return nil // not ours; ignore rather than refuse to start
			}
			m := p.emitted[airing]
			if m == nil {
				m = map[string]emittedMark{}
				p.emitted[airing] = m
			}
			m[mark] = emittedMark{
				At:  time.Unix(0, int64(binary.BigEndian.Uint64(v[:8]))),
				Seq: binary.BigEndian.Uint64(v[8:]),
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketCache).ForEach(func(k, v []byte) error {
			var e cacheEntry
			if json.Unmarshal(v, &e) == nil {
				p.cache[string(k)] = e
			}
			return nil
		})
		if err != nil {
			return err
		}
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if p.outboxN == 0 {
				p.outboxLo = binary.BigEndian.Uint64(k)
			}
			p.outboxN++
		}
		return nil
	})
	if err != nil {
		return persisted{}, fmt.Errorf("load state: %w", err)
	}
	return p, nil
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

func putMark(tx *bolt.Tx, airing, mark string, m emittedMark) error {
	var v [16]byte
	binary.BigEndian.PutUint64(v[:8], uint64(m.At.UnixNano()))
	binary.BigEndian.PutUint64(v[8:], m.Seq)
	return tx.Bucket(bucketEmitted).Put([]byte(airing+"/"+mark), v[:])
}

func deleteMarks(tx *bolt.Tx, airing string) error {
	c := tx.Bucket(bucketEmitted).Cursor()
	prefix := []byte(airing + "/")
	for k, _ := c.Seek(prefix); k != nil && strings.HasPrefix(string(k), string(prefix)); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// outboxEntry is one unconfirmed event.
type outboxEntry struct {
	seq     uint64
	payload []byte
}

// outbox returns the unconfirmed events in seq order, copied out of the
// transaction (bbolt's slices die with it).
func (s *store) outbox() ([]outboxEntry, error) {
	var out []outboxEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
			out = append(out, outboxEntry{seq: binary.BigEndian.Uint64(k), payload: append([]byte(nil), v...)})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return out, nil
}
