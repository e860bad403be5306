package broadcast

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// ProtocolVersion is the station protocol of docs/protocol.md.
const ProtocolVersion = 1

// MaxPayload bounds every MQTT payload either side accepts. A snapshot of a
// week holds a few dozen items; an event is a few hundred bytes.
const (
	MaxEventPayload    = 8 << 10
	MaxSnapshotPayload = 1 << 20
	MaxCommandPayload  = 64 << 10
)

// Snapshot is a device's desired schedule, retained on <root>/dev/<id>/schedule.
type Snapshot struct {
	V        int       `json:"v"`
	Device   string    `json:"device"`
	Station  string    `json:"station"`
	Rev      uint64    `json:"rev"`
	IssuedAt time.Time `json:"issued_at"`
	Items    []Item    `json:"items"`
}

// Item is one airing as a device sees it.
type Item struct {
	Airing    string    `json:"airing"`
	Programme string    `json:"programme"`
	Title     string    `json:"title"`
	Kind      Kind      `json:"kind"`
	Start     time.Time `json:"start"`
	NotAfter  time.Time `json:"not_after"`
	Priority  Priority  `json:"priority"`
	Audio     AudioRef  `json:"audio"`
}

// AudioRef tells a device what to fetch and how to check it.
type AudioRef struct {
	SHA256     string `json:"sha256"`
	Size       int64  `json:"size"`
	Type       string `json:"type"`
	DurationMS int64  `json:"duration_ms"`
	URL        string `json:"url"`
}

// EventType is what a device reports about an item.
type EventType string

const (
	EventReceived EventType = "received"
	EventReady    EventType = "ready"
	EventStarted  EventType = "started"
	EventFinished EventType = "finished"
	EventFailed   EventType = "failed"
	EventSkipped  EventType = "skipped"
)

var (
	failReasons = map[string]bool{"download_failed": true, "checksum_mismatch": true, "player_error": true, "expired": true, "power": true, "other": true}
	skipReasons = map[string]bool{"cancelled": true, "preempted": true}
)

// Event is the body of a device's acknowledgement.
type Event struct {
	V           int       `json:"v"`
	ID          string    `json:"id"`
	Device      string    `json:"device"`
	Seq         uint64    `json:"seq"`
	Airing      string    `json:"airing"`
	Rev         uint64    `json:"rev"`
	Event       EventType `json:"event"`
	At          time.Time `json:"at"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	PlayedMS    int64     `json:"played_ms,omitempty"`
	SHA256      string    `json:"sha256,omitempty"`
	ClockSynced bool      `json:"clock_synced"`
	Reason      string    `json:"reason,omitempty"`
}

// Envelope carries an event's exact bytes and the device's signature over them.
type Envelope struct {
	Body json.RawMessage `json:"body"`
	Sig  string          `json:"sig,omitempty"`
}

// Rejection reasons for untrusted payloads; they label metrics, so the set
// is small and fixed.
const (
	RejectMalformed = "malformed"
	RejectTooLarge  = "too_large"
	RejectVersion   = "version"
	RejectSchema    = "schema"
	RejectDevice    = "wrong_device"
	RejectSignature = "bad_signature"
	RejectSeq       = "bad_seq"
	RejectDisabled  = "disabled_device"
)

// ProtocolError is why a payload was refused, with a reason from the fixed set
// above and a message for the log.
type ProtocolError struct {
	Reason string
	Msg    string
}

func (e *ProtocolError) Error() string { return e.Reason + ": " + e.Msg }

func reject(reason, format string, args ...any) *ProtocolError {
	return &ProtocolError{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// DecodeEvent parses an event payload as received on <root>/dev/<id>/events.
// It returns the parsed event and the exact body bytes the signature covers.
// It checks the shape of the event only; whether the device, airing and seq
// make sense is for the receiver, which knows them.
func DecodeEvent(payload []byte) (Event, Envelope, error) {
	var env Envelope
	if len(payload) > MaxEventPayload {
		return Event{}, env, reject(RejectTooLarge, "event payload is %d bytes, the limit is %d", len(payload), MaxEventPayload)
	}
	if err := json.Unmarshal(payload, &env); err != nil {
		return Event{}, env, reject(RejectMalformed, "event envelope: %v", err)
	}
	if len(env.Body) == 0 || env.Body[0] != '{' {
		return Event{}, env, reject(RejectMalformed, "event envelope has no body object")
	}
	var ev Event
	if err := json.Unmarshal(env.Body, &ev); err != nil {
		return Event{}, env, reject(RejectMalformed, "event body: %v", err)
	}
	if err := ev.Validate(); err != nil {
		return Event{}, env, err
	}
	return ev, env, nil
}

// Validate checks an event against docs/protocol.md.
func (ev *Event) Validate() error {
	if ev.V != ProtocolVersion {
		return reject(RejectVersion, "event v=%d, this daemon speaks v=%d", ev.V, ProtocolVersion)
	}
	switch {
	case !ValidID(ev.ID):
		return reject(RejectSchema, "event id %q is not 1-64 characters of [A-Za-z0-9_-]", ev.ID)
	case !ValidID(ev.Device):
		return reject(RejectSchema, "device %q is not a valid device id", ev.Device)
	case ev.Seq == 0:
		return reject(RejectSchema, "seq must start at 1")
	case !ValidID(ev.Airing):
		return reject(RejectSchema, "airing %q is not a valid id", ev.Airing)
	case ev.At.IsZero():
		return reject(RejectSchema, "at is missing")
	case ev.PlayedMS < 0:
		return reject(RejectSchema, "played_ms is negative")
	case ev.SHA256 != "" && !validSHA256(ev.SHA256):
		return reject(RejectSchema, "sha256 %q is not 64 lower-case hex digits", ev.SHA256)
	}
	switch ev.Event {
	case EventReceived, EventReady, EventStarted:
	case EventFinished:
		if ev.StartedAt.IsZero() || ev.SHA256 == "" {
			return reject(RejectSchema, "a finished event needs started_at, played_ms and sha256")
		}
	case EventFailed:
		if !failReasons[ev.Reason] {
			return reject(RejectSchema, "failed event with reason %q; want download_failed, checksum_mismatch, player_error, expired, power or other", ev.Reason)
		}
	case EventSkipped:
		if !skipReasons[ev.Reason] {
			return reject(RejectSchema, "skipped event with reason %q; want cancelled or preempted", ev.Reason)
		}
	default:
		return reject(RejectSchema, "unknown event %q", ev.Event)
	}
	return nil
}

// VerifySignature checks the envelope's signature over the exact body bytes.
// A device with no registered key must not sign; one with a key must.
func (env Envelope) VerifySignature(key ed25519.PublicKey) error {
	if len(key) == 0 {
		if env.Sig != "" {
			return reject(RejectSignature, "event is signed but the device has no registered public key")
		}
		return nil
	}
	if env.Sig == "" {
		return reject(RejectSignature, "event is not signed but the device has a registered public key")
	}
	sig, err := base64.RawURLEncoding.DecodeString(env.Sig)
	if err != nil {
		// Be lenient about padding, strict about the signature.
		sig, err = base64.URLEncoding.DecodeString(env.Sig)
	}
	if err != nil || len(sig) != ed25519.SignatureSize || !ed25519.Verify(key, env.Body, sig) {
		return reject(RejectSignature, "signature does not verify with the device's public key")
	}
	return nil
}

// SignEvent marshals an event and signs the exact bytes; a nil key gives an
// unsigned envelope.
func SignEvent(ev Event, key ed25519.PrivateKey) ([]byte, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("marshal event: %w", err)
	}
	env := Envelope{Body: body}
	if key != nil {
		env.Sig = base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, body))
	}
	return json.Marshal(env)
}

// DecodeSnapshot parses and checks a schedule snapshot as a device receives it.
func DecodeSnapshot(payload []byte) (Snapshot, error) {
	var s Snapshot
	if len(payload) > MaxSnapshotPayload {
		return s, reject(RejectTooLarge, "snapshot payload is %d bytes, the limit is %d", len(payload), MaxSnapshotPayload)
	}
	if err := json.Unmarshal(payload, &s); err != nil {
		return Snapshot{}, reject(RejectMalformed, "snapshot: %v", err)
	}
	if s.V != ProtocolVersion {
		return Snapshot{}, reject(RejectVersion, "snapshot v=%d, want %d", s.V, ProtocolVersion)
	}
	if !ValidID(s.Device) || s.Rev == 0 {
		return Snapshot{}, reject(RejectSchema, "snapshot needs a device id and a rev >= 1")
	}
	for i, it := range s.Items {
		switch {
		case !ValidID(it.Airing):
			return Snapshot{}, reject(RejectSchema, "item %d: airing %q is not a valid id", i, it.Airing)
		case it.Start.IsZero() || !it.NotAfter.After(it.Start):
			return Snapshot{}, reject(RejectSchema, "item %d: start and not_after are required and not_after must follow start", i)
		case !validSHA256(it.Audio.SHA256) || it.Audio.Size <= 0 || it.Audio.URL == "":
			return Snapshot{}, reject(RejectSchema, "item %d: audio needs sha256, size and url", i)
		case it.Priority < PriorityNormal || it.Priority > PriorityEmergency:
			return Snapshot{}, reject(RejectSchema, "item %d: priority %d is not 0, 1 or 2", i, it.Priority)
		}
	}
	return s, nil
}

// Command is an immediate message on <root>/dev/<id>/cmd.
type Command struct {
	V       int    `json:"v"`
	Type    string `json:"type"` // receipt, play_now, stop, ping
	UptoSeq uint64 `json:"upto_seq,omitempty"`
	LogHash string `json:"log_hash,omitempty"`
	Item    *Item  `json:"item,omitempty"`
}

// Command types.
const (
	CmdReceipt = "receipt"
	CmdPlayNow = "play_now"
	CmdStop    = "stop"
	CmdPing    = "ping"
)

// DecodeCommand parses a command as a device receives it. Unknown types are
// returned without error: docs/protocol.md has devices ignore (and count) them.
func DecodeCommand(payload []byte) (Command, error) {
	var c Command
	if len(payload) > MaxCommandPayload {
		return c, reject(RejectTooLarge, "command payload is %d bytes, the limit is %d", len(payload), MaxCommandPayload)
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return Command{}, reject(RejectMalformed, "command: %v", err)
	}
	if c.V != ProtocolVersion {
		return Command{}, reject(RejectVersion, "command v=%d, want %d", c.V, ProtocolVersion)
	}
	if c.Type == CmdPlayNow && (c.Item == nil || !ValidID(c.Item.Airing) || !validSHA256(c.Item.Audio.SHA256)) {
		return Command{}, reject(RejectSchema, "play_now needs an item with an airing id and audio")
	}
	return c, nil
}

// DeviceStatus is retained on <root>/dev/<id>/status; the last will is
// {"v":1,"device":"<id>","state":"offline"}.
type DeviceStatus struct {
	V             int       `json:"v"`
	Device        string    `json:"device"`
	State         string    `json:"state"` // online, offline
	At            time.Time `json:"at,omitzero"`
	Agent         string    `json:"agent,omitempty"`
	Rev           uint64    `json:"rev,omitempty"`
	Outbox        int       `json:"outbox"`
	CacheBytes    int64     `json:"cache_bytes,omitempty"`
	ClockOffsetMS int64     `json:"clock_offset_ms"`
	ClockSynced   *bool     `json:"clock_synced,omitempty"`
	Volume        int       `json:"volume,omitempty"`
	Playing       string    `json:"playing"`
}

// DecodeStatus parses and checks a status message.
func DecodeStatus(payload []byte) (DeviceStatus, error) {
	var s DeviceStatus
	if len(payload) > MaxCommandPayload {
		return s, reject(RejectTooLarge, "status payload is %d bytes, the limit is %d", len(payload), MaxCommandPayload)
	}
	if err := json.Unmarshal(payload, &s); err != nil {
		return DeviceStatus{}, reject(RejectMalformed, "status: %v", err)
	}
	if s.V != ProtocolVersion {
		return DeviceStatus{}, reject(RejectVersion, "status v=%d, want %d", s.V, ProtocolVersion)
	}
	if !ValidID(s.Device) || (s.State != "online" && s.State != "offline") {
		return DeviceStatus{}, reject(RejectSchema, "status needs a device id and state online or offline")
	}
	return s, nil
}

func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && s == toLowerHex(s)
}

func toLowerHex(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'F' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// ItemOf is how an airing appears in a device's snapshot; audioURL is where
// the device downloads its audio.
func ItemOf(a *Airing, audioURL string) Item {
	return Item{
		Airing: a.ID, Programme: a.Programme, Title: a.Title, Kind: a.Kind,
		Start: a.Start, NotAfter: a.NotAfter, Priority: a.Priority,
		Audio: AudioRef{SHA256: a.Audio.SHA256, Size: a.Audio.Size, Type: a.Audio.Type, DurationMS: a.Audio.DurationMS, URL: audioURL},
	}
}
