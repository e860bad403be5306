package storage

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

// chunk is how many log entries a streaming read takes per read
// transaction. Short transactions matter: an open read transaction pins the
// pages it sees and stops the file from being re-mapped when it grows, which
// would stall the group-commit writer behind a slow reader.
const chunk = 1000

// appendOp appends op to the operations log inside tx; the caller's
// transaction makes it atomic with the change it records.
func (s *Store) appendOp(tx *bolt.Tx, op broadcast.OpEntry) (broadcast.OpEntry, error) {
	if op.Action == "" {
		return op, broadcast.FieldError(broadcast.EInvalid, "action", "an operations-log entry needs an action")
	}
	b := tx.Bucket(bktOps)
	seq, prev, err := opsHead(b)
	if err != nil {
		return op, err
	}
	if op.At.IsZero() {
		op.At = s.now()
	}
	// Strip the monotonic reading and keep the instant: the hash covers
	// At.UnixNano, and the JSON round trip must give back the same instant.
	op.At = op.At.Round(0)
	op.Seq, op.PrevHash = seq+1, prev
	op.Detail = append([]byte(nil), op.Detail...)
	if len(op.Detail) == 0 {
		op.Detail = nil
	}
	op.Hash = op.ChainHashIn(s.forms)
	v, err := json.Marshal(op)
	if err != nil {
		return op, fmt.Errorf("encode operation %d: %w", op.Seq, err)
	}
	// The log only grows at its end: packing pages full wastes no space.
	b.FillPercent = 1.0
	if err := b.Put(u64(op.Seq), v); err != nil {
		return op, fmt.Errorf("append operation %d: %w", op.Seq, err)
	}
	return op, nil
}

func opsHead(b *bolt.Bucket) (uint64, broadcast.Hash, error) {
	k, v := b.Cursor().Last()
	if k == nil {
		return 0, broadcast.Hash{}, nil
	}
	var last broadcast.OpEntry
	if err := json.Unmarshal(v, &last); err != nil {
		return 0, broadcast.Hash{}, fmt.Errorf("decode operation %d: %w", binary.BigEndian.Uint64(k), err)
	}
	return last.Seq, last.Hash, nil
}

// AppendOp appends an entry to the operations log on its own (for actions
// that change nothing in the store, such as an emergency broadcast sent). It
// returns the entry as logged.
func (s *Store) AppendOp(ctx context.Context, op broadcast.OpEntry) (broadcast.OpEntry, error) {
	if err := ctx.Err(); err != nil {
		return op, err
	}
	var logged broadcast.OpEntry
	err := s.db.Update(func(tx *bolt.Tx) error {
		s.gen.Add(1) // as in update: the writer's cache is for it alone
		var err error
		logged, err = s.appendOp(tx, op)
		return err
	})
	if err != nil {
		return op, fmt.Errorf("append operation %s %s: %w", op.Action, op.Subject, s.dbErr(err))
	}
	return logged, nil
}

// Ops calls fn for every operations-log entry after seq after, in order. It
// reads in chunks of short read transactions and calls fn outside them, so
// fn may use the store. fn's error stops the walk and is returned.
func (s *Store) Ops(after uint64, fn func(broadcast.OpEntry) error) error {
	for {
		var got []broadcast.OpEntry
		err := s.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bktOps).Cursor()
			for k, v := c.Seek(u64(after + 1)); k != nil && len(got) < chunk; k, v = c.Next() {
				var op broadcast.OpEntry
				if err := json.Unmarshal(v, &op); err != nil {
					return fmt.Errorf("decode operation %d: %w", binary.BigEndian.Uint64(k), err)
				}
				got = append(got, op)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read operations after %d: %w", after, err)
		}
		for _, op := range got {
			if err := fn(op); err != nil {
				return err
			}
			after = op.Seq
		}
		if len(got) < chunk {
			return nil
		}
	}
}

// OpsHead returns the last sequence number and hash of the operations log
// (0 and the zero hash when it is empty).
func (s *Store) OpsHead() (uint64, broadcast.Hash, error) {
	var (
		seq  uint64
		hash broadcast.Hash
	)
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		seq, hash, err = opsHead(tx.Bucket(bktOps))
		return err
	})
	if err != nil {
		return 0, broadcast.Hash{}, fmt.Errorf("operations head: %w", err)
	}
	return seq, hash, nil
}
