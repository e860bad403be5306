package storage

import (
	"bytes"
	"sync"
	"sync/atomic"

	"github.com/loaxa/loaxa/broadcast"
)

// deviceCache keeps decoded device records between changes of the devices.
// The hub looks up the sender of every event it receives, and the broker
// every device that connects; reading and decoding the record from bbolt
// each time was 5 % of the daemon's CPU in a burst of events from 10,047
// devices.
//
// A reader notes the generation before it reads the file, and the writers
// of devices move it after they commit. An entry read before a change is
// therefore tagged with a generation that the change has moved past, and is
// never served; at worst a reader that raced a change caches nothing.
type deviceCache struct {
	gen atomic.Uint64
	mu  sync.RWMutex
	at  uint64 // the generation the entries of m were read at
	m   map[string]broadcast.Device
}

// deviceCacheMax bounds the cache: one device per commune of the country
// is 10,047.
const deviceCacheMax = 1 << 16

// get returns the cached device and the generation to tag a fresh read with.
func (c *deviceCache) get(id string) (d broadcast.Device, gen uint64, ok bool) {
	gen = c.gen.Load()
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.at != gen {
		return broadcast.Device{}, gen, false
	}
	d, ok = c.m[id]
	return clone(d), gen, ok
}

// put caches d as read from the file at generation gen.
func (c *deviceCache) put(gen uint64, d broadcast.Device) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case gen < c.at:
		return // read before a change that another reader has seen since
	case gen > c.at || c.m == nil:
		c.m, c.at = map[string]broadcast.Device{}, gen
	}
	if len(c.m) < deviceCacheMax {
		c.m[d.ID] = clone(d)
	}
}

// changed is called after every committed change of devices (and after a
// failed one: it costs one miss per device).
func (c *deviceCache) changed() { c.gen.Add(1) }

// clone copies the one field a caller could change in place and so change
// the cache.
func clone(d broadcast.Device) broadcast.Device {
	d.PublicKey = bytes.Clone(d.PublicKey)
	return d
}
