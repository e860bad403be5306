package storage

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// Airings are stored in a compact binary form. They are on the hot path:
// every event a device reports decodes its airing, applies the event and
// encodes it again (once per group commit), and with JSON that was most of
// the writer's time (~35µs to decode an airing of 8 devices against ~3µs
// here). codec_test.go fails when broadcast.Airing or a type inside it gains
// a field this codec does not know, so that a field is never silently
// dropped. Records written as JSON (first byte '{') still decode.
//
// Times decode in UTC: the instant is kept, the zone is not (a station's
// zone is its Timezone, not whatever zone a time happened to carry).
const airingVersion = 1

func encodeAiring(a *broadcast.Airing) []byte {
	e := enc{b: make([]byte, 0, 256+len(a.Devices)*160)}
	e.b = append(e.b, airingVersion)
	for _, s := range []string{a.ID, a.Programme, a.Station, string(a.Month), string(a.Kind), a.Title, string(a.Status), a.Reason, a.Replaces} {
		e.str(s)
	}
	e.int(int64(a.Priority))
	e.str(a.Audio.SHA256)
	e.int(a.Audio.Size)
	e.str(a.Audio.Format)
	e.str(a.Audio.Type)
	e.int(a.Audio.DurationMS)
	for _, t := range []time.Time{a.Start, a.NotAfter, a.CreatedAt, a.UpdatedAt} {
		e.time(t)
	}
	if a.Devices == nil {
		e.uint(0)
	} else {
		e.uint(uint64(len(a.Devices)) + 1) // 0 keeps nil apart from empty
	}
	// Sorted, so that the same airing always encodes to the same bytes.
	for _, id := range slices.Sorted(maps.Keys(a.Devices)) {
		d := a.Devices[id]
		e.str(id)
		if d == nil {
			e.uint(0)
			continue
		}
		e.uint(1)
		e.str(string(d.Status))
		e.str(d.Reason)
		e.time(d.StartedAt)
		e.int(d.PlayedMS)
		if d.Events == nil {
			e.uint(0)
		} else {
			e.uint(uint64(len(d.Events)) + 1)
		}
		for _, r := range d.Events {
			e.uint(r.Entry)
			e.str(string(r.Event))
			e.time(r.At)
		}
	}
	return e.b
}

func decodeAiring(id string, v []byte) (*broadcast.Airing, error) {
	a := new(broadcast.Airing)
	if len(v) > 0 && v[0] == '{' {
		if err := json.Unmarshal(v, a); err != nil {
			return nil, fmt.Errorf("decode airing %s: %w", id, err)
		}
		return a, nil
	}
	if len(v) == 0 || v[0] != airingVersion {
		return nil, fmt.Errorf("decode airing %s: unknown encoding", id)
	}
	d := dec{b: v[1:]}
	a.ID, a.Programme, a.Station = d.str(), d.str(), d.str()
	a.Month, a.Kind, a.Title = broadcast.Month(d.str()), broadcast.Kind(d.sym()), d.str()
	a.Status, a.Reason, a.Replaces = broadcast.Status(d.sym()), d.str(), d.str()
	a.Priority = broadcast.Priority(d.int())
	a.Audio.SHA256 = d.str()
	a.Audio.Size = d.int()
	a.Audio.Format, a.Audio.Type = d.sym(), d.sym()
	a.Audio.DurationMS = d.int()
	a.Start, a.NotAfter, a.CreatedAt, a.UpdatedAt = d.time(), d.time(), d.time(), d.time()
	if n := d.uint(); n > 0 && d.err == nil {
		n--
		if n > uint64(len(d.b)) {
			return nil, fmt.Errorf("decode airing %s: %w", id, errCorrupt)
		}
		a.Devices = make(map[string]*broadcast.DeviceAiring, n)
		for range n {
			key := d.str()
			if d.uint() == 0 {
				a.Devices[key] = nil
				continue
			}
			da := &broadcast.DeviceAiring{Status: broadcast.Status(d.sym()), Reason: d.sym()}
			da.StartedAt = d.time()
			da.PlayedMS = d.int()
			if m := d.uint(); m > 0 && d.err == nil {
				m--
				if m > uint64(len(d.b)) {
					return nil, fmt.Errorf("decode airing %s: %w", id, errCorrupt)
				}
				da.Events = make([]broadcast.EventRef, m)
				for i := range da.Events {
					da.Events[i] = broadcast.EventRef{Entry: d.uint(), Event: broadcast.EventType(d.sym()), At: d.time()}
				}
			}
			a.Devices[key] = da
			if d.err != nil {
				break
			}
		}
	}
	if d.err != nil || len(d.b) != 0 {
		return nil, fmt.Errorf("decode airing %s: %w", id, errCorrupt)
	}
	return a, nil
}

var errCorrupt = errors.New("corrupt record")

type enc struct{ b []byte }

func (e *enc) uint(n uint64) { e.b = binary.AppendUvarint(e.b, n) }
func (e *enc) int(n int64)   { e.b = binary.AppendVarint(e.b, n) }
func (e *enc) str(s string) {
	e.uint(uint64(len(s)))
	e.b = append(e.b, s...)
}

// time writes 0 for the zero time, else 1, seconds and nanoseconds: every
// time.Time survives, not only those UnixNano can hold.
func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.uint(0)
		return
	}
	e.uint(1)
	e.int(t.Unix())
	e.uint(uint64(t.Nanosecond()))
}

// dec reads what enc wrote; the first error sticks and zero values follow.
type dec struct {
	b   []byte
	err error
}

func (d *dec) uint() uint64 {
	if d.err != nil {
		return 0
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[k:]
	return n
}

func (d *dec) int() int64 {
	if d.err != nil {
		return 0
	}
	n, k := binary.Varint(d.b)
	if k <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[k:]
	return n
}

func (d *dec) bytes() []byte {
	n := d.uint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errCorrupt
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// str copies: bbolt's memory is valid only inside the transaction.
func (d *dec) str() string { return string(d.bytes()) }

// sym is str for the few values that recur in every record (statuses,
// events, kinds, formats), returned without allocating.
func (d *dec) sym() string {
	b := d.bytes()
	switch string(b) {
	case "":
		return ""
	case "planned":
		return "planned"
	case "sent":
		return "sent"
	case "received":
		return "received"
	case "ready":
		return "ready"
	case "started":
		return "started"
	case "aired":
		return "aired"
	case "finished":
		return "finished"
	case "failed":
		return "failed"
	case "missed":
		return "missed"
	case "cancelled":
		return "cancelled"
	case "skipped":
		return "skipped"
	case "premiere":
		return "premiere"
	case "replay":
		return "replay"
	case "makeup":
		return "makeup"
	case "emergency":
		return "emergency"
	case "mp3":
		return "mp3"
	case "audio/mpeg":
		return "audio/mpeg"
	}
	return string(b)
}

func (d *dec) time() time.Time {
	if d.uint() == 0 {
		return time.Time{}
	}
	sec, nsec := d.int(), d.uint()
	if d.err != nil || nsec >= 1e9 {
		d.err = errCorrupt
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}
