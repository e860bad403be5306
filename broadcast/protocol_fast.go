package broadcast

import (
	"bytes"
	"time"
)

// DecodeEventFast returns what DecodeEvent returns for every payload — the
// event, the envelope's fields, the error — but reads the form devices send
// without encoding/json's reflection: verifying a million as-run entries
// spent a sixth of its time in json.Unmarshal, next to the ed25519 check
// that is the work that matters.
//
// The fast path takes only the compact JSON that SignEvent writes: no
// whitespace, strings of printable ASCII without escapes, numbers without
// sign, fraction or exponent, the envelope's and the event's keys in lower
// case and each at most once, no null, no other key. Within that subset JSON
// has one reading, the one encoding/json gives. Anything else — a space, an
// escape, a repeated or unknown key, an event Validate refuses — goes to
// DecodeEvent, so that the fast path never has to judge what it does not
// accept, and a payload that is not a valid event gets DecodeEvent's own
// error. FuzzDecodeEventFast holds the two together.
//
// Unlike DecodeEvent's, the returned Envelope's Body is payload's memory,
// not a copy (a verifier reads it once, and a copy per entry showed): the
// caller must not change payload while it uses the envelope.
func DecodeEventFast(payload []byte) (Event, Envelope, error) {
	if ev, env, ok := scanEvent(payload); ok {
		return ev, env, nil
	}
	return DecodeEvent(payload)
}

// scanEvent is DecodeEventFast's fast path: ok is false for anything outside
// its subset, and for an event that Validate refuses.
func scanEvent(payload []byte) (ev Event, env Envelope, ok bool) {
	if len(payload) > MaxEventPayload {
		return ev, env, false
	}
	s := scanner{p: payload}
	var seen [2]bool // body, sig
	ok = s.object(func(key []byte) bool {
		switch string(key) {
		case "body":
			if seen[0] {
				return false
			}
			seen[0] = true
			start := s.i
			if !s.event(&ev) {
				return false
			}
			env.Body = payload[start:s.i:s.i]
		case "sig":
			if seen[1] {
				return false
			}
			seen[1] = true
			sig, ok := s.str()
			if !ok {
				return false
			}
			env.Sig = string(sig)
		default:
			return false
		}
		return true
	})
	if !ok || s.i != len(payload) || !seen[0] || ev.Validate() != nil {
		return Event{}, Envelope{}, false
	}
	return ev, env, true
}

// The keys of Event, by their JSON names: a bit each, to refuse a repeat.
const (
	keyV = 1 << iota
	keyID
	keyDevice
	keySeq
	keyAiring
	keyRev
	keyEvent
	keyAt
	keyStartedAt
	keyPlayedMS
	keySHA256
	keyClockSynced
	keyReason
)

// event reads the event object at s.i into ev.
func (s *scanner) event(ev *Event) bool {
	var seen uint16
	return s.object(func(key []byte) bool {
		var bit uint16
		ok := true
		switch string(key) {
		case "v":
			bit = keyV
			var n uint64
			n, ok = s.uint()
			ev.V = int(n)
			ok = ok && uint64(ev.V) == n // an int of 32 bits overflows where encoding/json would fail
		case "id":
			bit = keyID
			ev.ID, ok = s.string()
		case "device":
			bit = keyDevice
			ev.Device, ok = s.string()
		case "seq":
			bit = keySeq
			ev.Seq, ok = s.uint()
		case "airing":
			bit = keyAiring
			ev.Airing, ok = s.string()
		case "rev":
			bit = keyRev
			ev.Rev, ok = s.uint()
		case "event":
			bit = keyEvent
			var b []byte
			b, ok = s.str()
			ev.Event = eventType(b)
		case "at":
			bit = keyAt
			ok = s.time(&ev.At)
		case "started_at":
			bit = keyStartedAt
			ok = s.time(&ev.StartedAt)
		case "played_ms":
			bit = keyPlayedMS
			var n uint64
			n, ok = s.uint()
			ev.PlayedMS = int64(n) // at most 18 digits: no overflow
		case "sha256":
			bit = keySHA256
			ev.SHA256, ok = s.string()
		case "clock_synced":
			bit = keyClockSynced
			ev.ClockSynced, ok = s.bool()
		case "reason":
			bit = keyReason
			ev.Reason, ok = s.string()
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	})
}

// eventType spares the known event types an allocation each.
func eventType(b []byte) EventType {
	for _, t := range [...]EventType{EventFinished, EventStarted, EventReady, EventReceived, EventFailed, EventSkipped} {
		if string(b) == string(t) {
			return t
		}
	}
	return EventType(b)
}

// scanner reads the compact JSON subset of DecodeEventFast from p at i.
type scanner struct {
	p []byte
	i int
}

// object reads an object whose values member reads, given each key; it
// stops at the first false.
func (s *scanner) object(member func(key []byte) bool) bool {
	if !s.byte('{') || s.byte('}') { // an empty object is no event nor envelope
		return false
	}
	for {
		key, ok := s.str()
		if !ok || !s.byte(':') || !member(key) {
			return false
		}
		if s.byte('}') {
			return true
		}
		if !s.byte(',') {
			return false
		}
	}
}

func (s *scanner) byte(c byte) bool {
	if s.i < len(s.p) && s.p[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a string of printable ASCII without escapes: exactly its bytes
// in encoding/json's reading too. Control characters, which JSON forbids,
// and anything else take the slow path.
func (s *scanner) str() ([]byte, bool) {
	if !s.byte('"') {
		return nil, false
	}
	start := s.i
	for j := start; j < len(s.p); j++ {
		switch c := s.p[j]; {
		case c == '"':
			s.i = j + 1
			return s.p[start:j], true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, false
		}
	}
	return nil, false
}

func (s *scanner) string() (string, bool) {
	b, ok := s.str()
	return string(b), ok
}

// uint reads digits without a leading zero, at most 18 of them so that no
// field of Event can overflow. What follows must be a ',' or a '}' (object
// checks it): a fraction or an exponent thus leaves the fast path.
func (s *scanner) uint() (uint64, bool) {
	start := s.i
	var n uint64
	for ; s.i < len(s.p) && s.p[s.i] >= '0' && s.p[s.i] <= '9'; s.i++ {
		n = n*10 + uint64(s.p[s.i]-'0')
	}
	d := s.i - start
	if d == 0 || d > 18 || d > 1 && s.p[start] == '0' {
		return 0, false
	}
	return n, true
}

func (s *scanner) bool() (bool, bool) {
	switch {
	case bytes.HasPrefix(s.p[s.i:], []byte("true")):
		s.i += len("true")
		return true, true
	case bytes.HasPrefix(s.p[s.i:], []byte("false")):
		s.i += len("false")
		return false, true
	}
	return false, false
}

// time hands the quoted string to time.Time's UnmarshalJSON, as
// encoding/json does, so that the two parse times alike.
func (s *scanner) time(t *time.Time) bool {
	start := s.i
	if _, ok := s.str(); !ok {
		return false
	}
	return t.UnmarshalJSON(s.p[start:s.i]) == nil
}
