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
// dropped. Records written as JSON (first byte '{') or in version 1 still
// decode.
//
// Version 2 makes what grows with every event small, because the size of
// the airing records is pages written per group commit: when a broadcast
// ends, each event rewrites its airing, and the airings due at the same
// time share pages in proportion to their size. The values that recur
// (statuses, events, kinds, reasons, formats) are one byte (symbols), an
// event's as-run entry is the difference from the device's previous one,
// and the times of a device's events are seconds from the airing's start:
// ~60 bytes a device with four events instead of ~120.
//
//	version | ID Programme Station Month | sym Kind | Title | sym Status | sym Reason | Replaces |
//	Priority | SHA256 Size sym Format sym Type DurationMS | time Start NotAfter CreatedAt UpdatedAt |
//	n+1 (0: nil) | n × (device | 0 (nil) or 1, sym Status, sym Reason, rel StartedAt, PlayedMS,
//	               m+1 (0: nil) | m × (Entry delta zigzag, sym Event, rel At))
//
// in uvarints and zigzag varints; sym is enc.sym, time enc.time and rel
// enc.rel (seconds from Start).
//
// Version 3 adds, after UpdatedAt, time CancelledAt, and in each device,
// after PlayedMS, a uvarint of flags (1: DoublePlay).
//
// Times decode in UTC: the instant is kept, the zone is not (a station's
// zone is its Timezone, not whatever zone a time happened to carry).
const airingVersion = 3

const flagDoublePlay = 1

// symbols are written as their index + 1 (0: the string follows). The list
// is part of the format: append only, never reorder or edit.
var symbols = [...]string{
	"planned", "sent", "received", "ready", "started", "aired", "finished", "failed",
	"missed", "cancelled", "skipped", "premiere", "replay", "makeup", "emergency",
	"wrong_audio", "short_play", "off_schedule", "no_finish",
	"download_failed", "checksum_mismatch", "player_error", "expired", "power", "other", "preempted",
	"mp3", "wav", "ogg-opus", "webm-opus", "audio/mpeg", "audio/wav", "audio/ogg", "audio/webm",
	"played_after_cancel",
}

var symbolIndex = func() map[string]uint64 {
	m := make(map[string]uint64, len(symbols))
	for i, s := range symbols {
		m[s] = uint64(i) + 1
	}
	return m
}()

func encodeAiring(a *broadcast.Airing) []byte {
	e := enc{b: make([]byte, 0, 192+len(a.Devices)*64)}
	e.b = append(e.b, airingVersion)
	e.str(a.ID)
	e.str(a.Programme)
	e.str(a.Station)
	e.str(string(a.Month))
	e.sym(string(a.Kind))
	e.str(a.Title)
	e.sym(string(a.Status))
	e.sym(a.Reason)
	e.str(a.Replaces)
	e.int(int64(a.Priority))
	e.str(a.Audio.SHA256)
	e.int(a.Audio.Size)
	e.sym(a.Audio.Format)
	e.sym(a.Audio.Type)
	e.int(a.Audio.DurationMS)
	for _, t := range []time.Time{a.Start, a.NotAfter, a.CreatedAt, a.UpdatedAt, a.CancelledAt} {
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
		e.sym(string(d.Status))
		e.sym(d.Reason)
		e.rel(d.StartedAt, a.Start)
		e.int(d.PlayedMS)
		var flags uint64
		if d.DoublePlay {
			flags |= flagDoublePlay
		}
		e.uint(flags)
		if d.Events == nil {
			e.uint(0)
		} else {
			e.uint(uint64(len(d.Events)) + 1)
		}
		var prev uint64
		for _, r := range d.Events {
			e.int(int64(r.Entry - prev)) // wraps both ways: exact for any value
			prev = r.Entry
			e.sym(string(r.Event))
			e.rel(r.At, a.Start)
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
	if len(v) == 0 || v[0] < 1 || v[0] > airingVersion {
		return nil, fmt.Errorf("decode airing %s: unknown encoding", id)
	}
	d := dec{b: v[1:]}
	// Version 1 wrote every symbol as a string and every time whole.
	sym, rel := d.symbol, d.rel
	if v[0] == 1 {
		sym = d.sym
		rel = func(time.Time) time.Time { return d.time() }
	}
	a.ID, a.Programme, a.Station = d.str(), d.str(), d.str()
	a.Month, a.Kind, a.Title = broadcast.Month(d.str()), broadcast.Kind(sym()), d.str()
	a.Status, a.Reason, a.Replaces = broadcast.Status(sym()), sym(), d.str()
	a.Priority = broadcast.Priority(d.int())
	a.Audio.SHA256 = d.str()
	a.Audio.Size = d.int()
	a.Audio.Format, a.Audio.Type = sym(), sym()
	a.Audio.DurationMS = d.int()
	a.Start, a.NotAfter, a.CreatedAt, a.UpdatedAt = d.time(), d.time(), d.time(), d.time()
	if v[0] >= 3 {
		a.CancelledAt = d.time()
	}
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
			da := &broadcast.DeviceAiring{Status: broadcast.Status(sym()), Reason: sym()}
			da.StartedAt = rel(a.Start)
			da.PlayedMS = d.int()
			if v[0] >= 3 {
				da.DoublePlay = d.uint()&flagDoublePlay != 0
			}
			if m := d.uint(); m > 0 && d.err == nil {
				m--
				if m > uint64(len(d.b)) {
					return nil, fmt.Errorf("decode airing %s: %w", id, errCorrupt)
				}
				da.Events = make([]broadcast.EventRef, m)
				var prev uint64
				for i := range da.Events {
					r := &da.Events[i]
					if v[0] == 1 {
						r.Entry = d.uint()
					} else {
						prev += uint64(d.int())
						r.Entry = prev
					}
					r.Event = broadcast.EventType(sym())
					r.At = rel(a.Start)
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

// sym writes a symbol's number, or 0 and the string.
func (e *enc) sym(s string) {
	if n, ok := symbolIndex[s]; ok {
		e.uint(n)
		return
	}
	e.uint(0)
	e.str(s)
}

// rel writes t as time does, but with seconds from base when both are
// within ±2^62 s (so the difference cannot overflow): 2 and the difference.
func (e *enc) rel(t, base time.Time) {
	const lim = 1 << 62
	ts, bs := t.Unix(), base.Unix()
	if t.IsZero() || ts <= -lim || ts >= lim || bs <= -lim || bs >= lim {
		e.time(t)
		return
	}
	e.uint(2)
	e.int(ts - bs)
	e.uint(uint64(t.Nanosecond()))
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

func (d *dec) time() time.Time { return d.rel(time.Time{}) }

// rel reads what enc.rel or enc.time wrote.
func (d *dec) rel(base time.Time) time.Time {
	var sec int64
	switch d.uint() {
	case 0:
		return time.Time{}
	case 1:
		sec = d.int()
	case 2:
		sec = base.Unix() + d.int()
	default:
		d.err = errCorrupt
		return time.Time{}
	}
	nsec := d.uint()
	if d.err != nil || nsec >= 1e9 {
		d.err = errCorrupt
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// symbol reads what enc.sym wrote.
func (d *dec) symbol() string {
	n := d.uint()
	switch {
	case d.err != nil:
		return ""
	case n == 0:
		return d.sym()
	case n <= uint64(len(symbols)):
		return symbols[n-1]
	}
	d.err = errCorrupt
	return ""
}
