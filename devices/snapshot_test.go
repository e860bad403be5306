package devices

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// TestCheckSnapshotAgreesWithDecode: the hub's check of a snapshot it is
// about to publish refuses exactly what a device's decoder refuses, for the
// same reason.
func TestCheckSnapshotAgreesWithDecode(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 5, 6, 30, 0, 0, time.FixedZone("ICT", 7*3600))
	good := func() broadcast.Snapshot {
		return broadcast.Snapshot{V: broadcast.ProtocolVersion, Device: "14755-03", Station: "14755", Rev: 42, IssuedAt: start.Add(-time.Hour),
			Items: []broadcast.Item{{
				Airing: "01JF3Q7W6Z9M2X8K4T5R1N0ABC", Programme: "01JF2A0000000000000000PROG", Title: "Chuyển đổi số", Kind: broadcast.KindPremiere,
				Start: start, NotAfter: start.Add(15 * time.Minute), Priority: broadcast.PriorityNormal,
				Audio: broadcast.AudioRef{SHA256: strings.Repeat("9f", 32), Size: 14400000, Type: "audio/mpeg", DurationMS: 900000, URL: "https://radio.example.vn/audio/9f"},
			}}}
	}
	for _, tc := range []struct {
		name string
		edit func(*broadcast.Snapshot)
	}{
		{"valid", func(*broadcast.Snapshot) {}},
		{"no items", func(s *broadcast.Snapshot) { s.Items = []broadcast.Item{} }},
		{"wrong version", func(s *broadcast.Snapshot) { s.V = 2 }},
		{"bad device", func(s *broadcast.Snapshot) { s.Device = "a/b" }},
		{"no device", func(s *broadcast.Snapshot) { s.Device = "" }},
		{"rev 0", func(s *broadcast.Snapshot) { s.Rev = 0 }},
		{"bad airing", func(s *broadcast.Snapshot) { s.Items[0].Airing = "" }},
		{"no start", func(s *broadcast.Snapshot) { s.Items[0].Start = time.Time{} }},
		{"not_after before start", func(s *broadcast.Snapshot) { s.Items[0].NotAfter = start.Add(-time.Nanosecond) }},
		{"not_after at start", func(s *broadcast.Snapshot) { s.Items[0].NotAfter = start }},
		{"not_after a nanosecond after", func(s *broadcast.Snapshot) { s.Items[0].NotAfter = start.Add(time.Nanosecond) }},
		{"uppercase sha256", func(s *broadcast.Snapshot) { s.Items[0].Audio.SHA256 = strings.Repeat("9F", 32) }},
		{"short sha256", func(s *broadcast.Snapshot) { s.Items[0].Audio.SHA256 = "9f" }},
		{"non-hex sha256", func(s *broadcast.Snapshot) { s.Items[0].Audio.SHA256 = strings.Repeat("zz", 32) }},
		{"no size", func(s *broadcast.Snapshot) { s.Items[0].Audio.Size = 0 }},
		{"no url", func(s *broadcast.Snapshot) { s.Items[0].Audio.URL = "" }},
		{"priority -1", func(s *broadcast.Snapshot) { s.Items[0].Priority = -1 }},
		{"priority 3", func(s *broadcast.Snapshot) { s.Items[0].Priority = 3 }},
		{"emergency", func(s *broadcast.Snapshot) { s.Items[0].Priority = broadcast.PriorityEmergency }},
		{"too large", func(s *broadcast.Snapshot) { s.Items[0].Title = strings.Repeat("x", broadcast.MaxSnapshotPayload) }},
	} {
		s := good()
		tc.edit(&s)
		payload, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		_, want := broadcast.DecodeSnapshot(payload)
		got := checkSnapshot(s, len(payload))
		if reason(got) != reason(want) {
			t.Errorf("%s: checkSnapshot says %v, DecodeSnapshot %v", tc.name, got, want)
		}
	}
}

func reason(err error) string {
	var pe *broadcast.ProtocolError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &pe):
		return pe.Reason
	}
	return err.Error()
}
