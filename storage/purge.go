package storage

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

// Evidence is kept for the configured retention (five years by default),
// then may be purged: the as-run entries up to a sealed month's last entry
// go, with the index entries that point to them. The airings stay, with
// their summaries, so that the compliance of old months can still be
// reported; what they cite from the log is gone, and the month's bundle,
// exported when it was sealed, is its evidence from then on.
//
// The log keeps chaining from a known hash: meta asrun_base holds the last
// purged entry's seq and hash, where the walk of the log starts (AsRunBase)
// and where the next entry chains from once every entry is purged
// (asRunHead). The same transaction writes the purge to the operations log,
// whose chain covers it, so that a verifier can tell a recorded purge from
// entries cut away.
var metaAsRunBase = []byte("asrun_base") // seq8 hash32

// asRunBase is the last purged entry (0 and the zero hash: none).
func asRunBase(tx *bolt.Tx) (uint64, broadcast.Hash) {
	var h broadcast.Hash
	v := tx.Bucket(bktMeta).Get(metaAsRunBase)
	if len(v) != 8+len(h) {
		return 0, h
	}
	copy(h[:], v[8:])
	return binary.BigEndian.Uint64(v[:8]), h
}

// AsRunBase returns the seq and hash of the last purged as-run entry: the
// log starts after it. 0 and the zero hash when nothing was purged.
func (s *Store) AsRunBase() (seq uint64, hash broadcast.Hash, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		seq, hash = asRunBase(tx)
		return nil
	})
	if err != nil {
		return 0, broadcast.Hash{}, fmt.Errorf("as-run base: %w", err)
	}
	return seq, hash, nil
}

// PurgeResult is what PurgeAsRun removed.
type PurgeResult = broadcast.PurgeResult

// PurgeAsRun removes the as-run entries up to upto, whose hash must be
// uptoHash (the caller takes both from a seal: a log that changed since is
// refused, EConflict), and op, the purge's operations-log entry, in one
// transaction. The rules of what may be purged (retention, seals) are the
// caller's.
func (s *Store) PurgeAsRun(ctx context.Context, upto uint64, uptoHash broadcast.Hash, op *broadcast.OpEntry) (PurgeResult, error) {
	res := PurgeResult{Upto: upto, UptoHash: uptoHash}
	err := s.update(ctx, op, func(tx *bolt.Tx) error {
		asrun := tx.Bucket(bktAsRun)
		base, _ := asRunBase(tx)
		if upto <= base {
			return broadcast.Errorf(broadcast.EConflict, "the as-run log is purged up to entry %d already", base)
		}
		h, err := entryHash(asrun, u64(upto))
		if err != nil {
			return broadcast.Errorf(broadcast.EConflict, "as-run entry %d: %v", upto, err)
		}
		if h != uptoHash {
			return broadcast.Errorf(broadcast.EConflict, "as-run entry %d has hash %s, not %s: the log is not what was sealed", upto, h, uptoHash)
		}
		// Deleting under a cursor moves it to the next key; collect first.
		var keys [][]byte
		c := asrun.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= upto; k, _ = c.Next() {
			keys = append(keys, k)
		}
		for _, k := range keys {
			if err := asrun.Delete(k); err != nil {
				return fmt.Errorf("delete as-run entry %d: %w", binary.BigEndian.Uint64(k), err)
			}
		}
		res.Entries = len(keys)
		// Where a device's old seqs were logged: answers to re-sent events,
		// which for entries this old no device still holds.
		idx := tx.Bucket(bktAsRunDev)
		keys = keys[:0]
		err = idx.ForEach(func(k, v []byte) error {
			if len(v) == 8 && binary.BigEndian.Uint64(v) <= upto {
				keys = append(keys, k)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("scan the device seq index: %w", err)
		}
		for _, k := range keys {
			if err := idx.Delete(k); err != nil {
				return fmt.Errorf("delete device seq index entry: %w", err)
			}
		}
		res.IndexPairs = len(keys)
		return tx.Bucket(bktMeta).Put(metaAsRunBase, append(u64(upto), uptoHash[:]...))
	})
	if err != nil {
		return PurgeResult{}, fmt.Errorf("purge the as-run log up to %d: %w", upto, err)
	}
	s.log.Info("purged the as-run log", "upto", upto, "entries", res.Entries, "index_pairs", res.IndexPairs)
	return res, nil
}
