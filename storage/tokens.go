package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

// tokenRec is a token as stored: broadcast.Token keeps its hash out of JSON.
type tokenRec struct {
	broadcast.Token
	Hash string `json:"hash"`
}

func decodeToken(v []byte) (broadcast.Token, error) {
	var r tokenRec
	if err := json.Unmarshal(v, &r); err != nil {
		return broadcast.Token{}, err
	}
	r.Token.Hash = r.Hash
	return r.Token, nil
}

// PutToken creates or replaces a token. Two tokens cannot share a hash.
func (s *Store) PutToken(ctx context.Context, t broadcast.Token, op *broadcast.OpEntry) error {
	if !broadcast.ValidID(t.ID) || t.Hash == "" {
		return broadcast.Errorf(broadcast.EInvalid, "token %q: a valid id and a hash are required", t.ID)
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = s.now()
	}
	t.Name = broadcast.NFC(t.Name)
	err := s.update(ctx, op, func(tx *bolt.Tx) error {
		tb, hb := tx.Bucket(bktTokens), tx.Bucket(bktTokenHash)
		if id := hb.Get([]byte(t.Hash)); id != nil && string(id) != t.ID {
			return broadcast.Errorf(broadcast.EConflict, "another token has the same secret")
		}
		if old := tb.Get([]byte(t.ID)); old != nil {
			was, err := decodeToken(old)
			if err != nil {
				return err
			}
			if err := hb.Delete([]byte(was.Hash)); err != nil {
				return err
			}
		}
		v, err := json.Marshal(tokenRec{Token: t, Hash: t.Hash})
		if err != nil {
			return err
		}
		if err := tb.Put([]byte(t.ID), v); err != nil {
			return err
		}
		return hb.Put([]byte(t.Hash), []byte(t.ID))
	})
	if err != nil {
		return fmt.Errorf("store token %s: %w", t.ID, err)
	}
	return nil
}

// DeleteToken revokes a token.
func (s *Store) DeleteToken(ctx context.Context, id string, op *broadcast.OpEntry) error {
	err := s.update(ctx, op, func(tx *bolt.Tx) error {
		tb := tx.Bucket(bktTokens)
		v := tb.Get([]byte(id))
		if v == nil {
			return notFound("token", id)
		}
		t, err := decodeToken(v)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bktTokenHash).Delete([]byte(t.Hash)); err != nil {
			return err
		}
		return tb.Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("delete token %s: %w", id, err)
	}
	return nil
}

// TokenByHash finds the token whose secret hashes (broadcast.HashToken) to hash.
func (s *Store) TokenByHash(hash string) (broadcast.Token, error) {
	var t broadcast.Token
	err := s.view(func(tx *bolt.Tx) error {
		id := tx.Bucket(bktTokenHash).Get([]byte(hash))
		if id == nil {
			return broadcast.Errorf(broadcast.ENotFound, "no token has this secret")
		}
		var err error
		t, err = decodeToken(tx.Bucket(bktTokens).Get(id))
		return err
	})
	if err != nil {
		// The hash itself stays out of the message: it is as good as the
		// secret for looking the token up.
		return broadcast.Token{}, fmt.Errorf("token by hash: %w", err)
	}
	return t, nil
}

// Tokens returns every token, sorted by id.
func (s *Store) Tokens() ([]broadcast.Token, error) {
	var out []broadcast.Token
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bktTokens).ForEach(func(k, v []byte) error {
			t, err := decodeToken(v)
			if err != nil {
				return fmt.Errorf("decode token %s: %w", k, err)
			}
			out = append(out, t)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	return out, nil
}

// TouchToken records that the token was used at at. It writes nothing when
// the token is gone (revoked meanwhile: a late touch must not bring it
// back) or was already marked used at or after at. No operations-log entry:
// use is not a change of who may do what.
func (s *Store) TouchToken(ctx context.Context, id string, at time.Time) error {
	err := s.update(ctx, nil, func(tx *bolt.Tx) error {
		tb := tx.Bucket(bktTokens)
		v := tb.Get([]byte(id))
		if v == nil {
			return errNoChange
		}
		t, err := decodeToken(v)
		if err != nil {
			return err
		}
		if !t.LastUsed.Before(at) {
			return errNoChange
		}
		t.LastUsed = at
		v, err = json.Marshal(tokenRec{Token: t, Hash: t.Hash})
		if err != nil {
			return err
		}
		return tb.Put([]byte(id), v)
	})
	if err != nil {
		return fmt.Errorf("touch token %s: %w", id, err)
	}
	return nil
}

// Token returns the token with the given id.
func (s *Store) Token(id string) (broadcast.Token, error) {
	var t broadcast.Token
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bktTokens).Get([]byte(id))
		if v == nil {
			return notFound("token", id)
		}
		var err error
		t, err = decodeToken(v)
		return err
	})
	if err != nil {
		return broadcast.Token{}, fmt.Errorf("token %s: %w", id, err)
	}
	return t, nil
}
