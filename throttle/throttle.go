// Package throttle slows down whoever keeps failing to authenticate. A key
// (a client address, a user name) that failed free times must wait before
// its next attempt, twice as long after each further failure, up to a
// maximum. Waiting attempts are refused without being checked,
// so that a flood of guesses costs neither the CPU of the checks (device
// secrets are PBKDF2 hashes) nor a log line each.
package throttle

import (
	"sync"
	"time"
)

// Backoff is the failures of each key. The zero value is not usable; see New.
type Backoff struct {
	free     int
	base     time.Duration
	max      time.Duration
	forget   time.Duration
	maxKeys  int
	mu       sync.Mutex
	m        map[string]*entry
	sinceGC  int
	disabled bool
}

type entry struct {
	fails int
	until time.Time // no attempt before
	last  time.Time // the last failure
}

// DefaultMaxKeys bounds the keys remembered: a flood from many addresses
// must not grow the map without end.
const DefaultMaxKeys = 100_000

// New returns a Backoff that lets a key fail free times; after the
// free-th failure it must wait base, 2×base, 4×base… up to most. A key that has not failed for
// max(most, 10 min) starts afresh. free < 0 turns it off: nothing waits.
func New(free int, base, most time.Duration) *Backoff {
	return &Backoff{free: free, base: base, max: most, forget: max(most, 10*time.Minute),
		maxKeys: DefaultMaxKeys, m: map[string]*entry{}, disabled: free < 0 || base <= 0}
}

// Wait is how long key must still wait at now; 0 means it may try.
func (b *Backoff) Wait(key string, now time.Time) time.Duration {
	if b == nil || b.disabled {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.m[key]
	if e == nil || !now.Before(e.until) {
		return 0
	}
	return e.until.Sub(now)
}

// Fail records a failure of key at now and returns how long it must now
// wait (0 while its failures are still free).
func (b *Backoff) Fail(key string, now time.Time) time.Duration {
	if b == nil || b.disabled {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.m[key]
	if e != nil && now.Sub(e.last) > b.forget {
		e.fails = 0
	}
	if e == nil {
		if b.sinceGC++; len(b.m) >= b.maxKeys || b.sinceGC >= 1024 {
			b.sweepLocked(now)
		}
		if len(b.m) >= b.maxKeys {
			// Every remembered key is waiting: this one goes untracked
			// rather than evicting one that is.
			return 0
		}
		e = &entry{}
		b.m[key] = e
	}
	e.fails++
	e.last = now
	over := e.fails - b.free // the free-th failure is the first that makes the key wait
	if over < 0 {
		return 0
	}
	d := b.base
	for i := 0; i < over && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	e.until = now.Add(d)
	return d
}

// Reset forgets key's failures, after it authenticated.
func (b *Backoff) Reset(key string) {
	if b == nil || b.disabled {
		return
	}
	b.mu.Lock()
	delete(b.m, key)
	b.mu.Unlock()
}

// Len is how many keys are remembered.
func (b *Backoff) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}

// sweepLocked drops the keys that are forgotten, and when that is not
// enough, those that need not wait now.
func (b *Backoff) sweepLocked(now time.Time) {
	b.sinceGC = 0
	for k, e := range b.m {
		if now.Sub(e.last) > b.forget {
			delete(b.m, k)
		}
	}
	if len(b.m) < b.maxKeys {
		return
	}
	for k, e := range b.m {
		if !now.Before(e.until) {
			delete(b.m, k)
		}
	}
}
