package storage

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// The binary airing codec lists fields by hand. If broadcast grows a field,
// this test fails until encodeAiring and decodeAiring carry it (and the
// lists below are updated), so that no field is silently dropped.
func TestAiringCodecKnowsEveryField(t *testing.T) {
	known := map[reflect.Type]string{
		reflect.TypeFor[broadcast.Airing]():       "ID Programme Station Month Kind Priority Title Audio Start NotAfter Status Reason Replaces CancelledAt Devices CreatedAt UpdatedAt",
		reflect.TypeFor[broadcast.Audio]():        "SHA256 Size Format Type DurationMS",
		reflect.TypeFor[broadcast.DeviceAiring](): "Status Reason StartedAt PlayedMS DoublePlay Events",
		reflect.TypeFor[broadcast.EventRef]():     "Entry Event At",
	}
	for typ, want := range known {
		var got []string
		for f := range typ.Fields() {
			got = append(got, f.Name)
		}
		if strings.Join(got, " ") != want {
			t.Errorf("%s has fields %v; the codec knows %s. Update codec.go and this list.", typ, got, want)
		}
	}
}

func fullAiring() *broadcast.Airing {
	loc := time.FixedZone("ICT", 7*3600)
	at := time.Date(2026, 3, 2, 6, 0, 1, 123456789, loc)
	return &broadcast.Airing{
		ID: "01JABC", Programme: "01JPRG", Station: "38001", Month: "2026-03", Kind: broadcast.KindMakeup,
		Priority: broadcast.PriorityEmergency, Title: "Chuyển đổi số — tháng 3",
		Audio: broadcast.Audio{SHA256: strings.Repeat("ab", 32), Size: 1 << 40, Format: "ogg-opus", Type: "audio/ogg", DurationMS: 600_000},
		Start: at, NotAfter: at.Add(time.Hour), Status: broadcast.StatusFailed, Reason: "no_finish", Replaces: "01JOLD",
		Devices: map[string]*broadcast.DeviceAiring{
			"d2": {Status: broadcast.StatusAired, StartedAt: at, PlayedMS: 599_000, DoublePlay: true, Events: []broadcast.EventRef{{Entry: 1 << 50, Event: broadcast.EventStarted, At: at}, {Entry: 7, Event: "custom", At: at.Add(time.Second)}}},
			"d1": {Status: broadcast.StatusFailed, Reason: "player_error", Events: []broadcast.EventRef{}},
			"d3": {Status: broadcast.StatusPlanned},
		},
		CreatedAt:   time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC), // outside UnixNano's range
		UpdatedAt:   time.Date(2300, 1, 1, 0, 0, 0, 1, time.UTC),
		CancelledAt: at.Add(-time.Minute),
	}
}

func TestAiringCodecRoundTrip(t *testing.T) {
	for _, a := range []*broadcast.Airing{fullAiring(), {ID: "x", Station: "s"}, {ID: "y", Devices: map[string]*broadcast.DeviceAiring{}}} {
		v := encodeAiring(a)
		got, err := decodeAiring(a.ID, v)
		if err != nil {
			t.Fatal(err)
		}
		// Same instants and values; zones are not kept, so compare as JSON
		// in UTC.
		if want, have := jsonUTC(t, a), jsonUTC(t, got); want != have {
			t.Errorf("round trip:\n got %s\nwant %s", have, want)
		}
		if string(encodeAiring(got)) != string(v) {
			t.Error("re-encoding differs")
		}
		for i := 1; i < len(v); i++ {
			if _, err := decodeAiring(a.ID, v[:i]); err == nil {
				t.Fatalf("truncated record (%d of %d bytes) decoded", i, len(v))
			}
		}
	}
	// Records written as JSON still read.
	a := fullAiring()
	j, _ := json.Marshal(a)
	got, err := decodeAiring(a.ID, j)
	if err != nil || !got.Start.Equal(a.Start) || got.Devices["d2"].Events[0].Entry != 1<<50 {
		t.Errorf("JSON record: %v %+v", err, got)
	}
}

// jsonUTC renders an airing with every time in UTC.
func jsonUTC(t *testing.T, a *broadcast.Airing) string {
	t.Helper()
	c := cloneAiring(a)
	utc := func(p *time.Time) {
		if !p.IsZero() {
			*p = p.UTC()
		}
	}
	utc(&c.Start)
	utc(&c.NotAfter)
	utc(&c.CreatedAt)
	utc(&c.UpdatedAt)
	utc(&c.CancelledAt)
	for _, d := range c.Devices {
		if d == nil {
			continue
		}
		utc(&d.StartedAt)
		for i := range d.Events {
			utc(&d.Events[i].At)
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func BenchmarkAiringCodec(b *testing.B) {
	a := fullAiring()
	for i := range 8 {
		a.Devices["dev"+string(rune('a'+i))] = &broadcast.DeviceAiring{Status: broadcast.StatusAired, StartedAt: a.Start, PlayedMS: 600_000,
			Events: []broadcast.EventRef{{Entry: 1, Event: "received", At: a.Start}, {Entry: 2, Event: "ready", At: a.Start}, {Entry: 3, Event: "started", At: a.Start}, {Entry: 4, Event: "finished", At: a.Start}}}
	}
	v := encodeAiring(a)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			encodeAiring(a)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeAiring(a.ID, v); err != nil {
				b.Fatal(err)
			}
		}
	})
	j, _ := json.Marshal(a)
	b.Run("decode-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeAiring(a.ID, j); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Logf("binary %d bytes, JSON %d bytes", len(v), len(j))
}

func TestCloneAiring(t *testing.T) {
	a := fullAiring()
	c := cloneAiring(a)
	if jsonUTC(t, a) != jsonUTC(t, c) {
		t.Fatal("clone differs")
	}
	// Appending to one device's events in the clone touches neither the
	// original nor the clone's other devices.
	c.Devices["d2"].Events = append(c.Devices["d2"].Events, broadcast.EventRef{Entry: 99})
	c.Devices["d1"].Events = append(c.Devices["d1"].Events, broadcast.EventRef{Entry: 98})
	c.Devices["d2"].Events[0].Entry = 5
	c.Devices["d3"].Status = broadcast.StatusAired
	if a.Devices["d2"].Events[0].Entry != 1<<50 || len(a.Devices["d2"].Events) != 2 || len(a.Devices["d1"].Events) != 0 || a.Devices["d3"].Status != broadcast.StatusPlanned {
		t.Error("clone shares memory with the original")
	}
	if c.Devices["d2"].Events[1].Entry != 7 || c.Devices["d2"].Events[2].Entry != 99 {
		t.Errorf("clone's own appends interfere: %+v", c.Devices["d2"].Events)
	}
	if a.Devices["d1"].Events == nil || c.Devices["d1"].Events == nil {
		t.Error("empty events became nil")
	}
	if b := cloneAiring(&broadcast.Airing{ID: "x"}); b.Devices != nil {
		t.Error("nil devices became non-nil")
	}
}

// Version 1 records (every symbol a string, every time whole) still decode.
func TestAiringCodecReadsVersion1(t *testing.T) {
	for _, a := range []*broadcast.Airing{fullAiringV2(), {ID: "x", Station: "s"}, {ID: "y", Devices: map[string]*broadcast.DeviceAiring{}}} {
		got, err := decodeAiring(a.ID, encodeAiringV1(a))
		if err != nil {
			t.Fatal(err)
		}
		if want, have := jsonUTC(t, a), jsonUTC(t, got); want != have {
			t.Errorf("version 1:\n got %s\nwant %s", have, want)
		}
	}
}

// Version 2 records (no CancelledAt, no device flags) still decode.
func TestAiringCodecReadsVersion2(t *testing.T) {
	a := fullAiringV2()
	v := encodeAiring(a)
	v2 := encodeAiringV2(a)
	got, err := decodeAiring(a.ID, v2)
	if err != nil {
		t.Fatal(err)
	}
	if want, have := jsonUTC(t, a), jsonUTC(t, got); want != have {
		t.Errorf("version 2:\n got %s\nwant %s", have, want)
	}
	if len(v2) >= len(v) {
		t.Errorf("version 2 record is %d bytes, version 3 %d: the new fields were not cut", len(v2), len(v))
	}
}

// fullAiringV2 is fullAiring with only the fields version 2 knows.
func fullAiringV2() *broadcast.Airing {
	a := fullAiring()
	a.CancelledAt = time.Time{}
	for _, d := range a.Devices {
		if d != nil {
			d.DoublePlay = false
		}
	}
	return a
}

// encodeAiringV2 is version 2 of the codec: version 3 less CancelledAt and
// the device flags.
func encodeAiringV2(a *broadcast.Airing) []byte {
	e := enc{}
	e.b = append(e.b, 2)
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
	for _, t := range []time.Time{a.Start, a.NotAfter, a.CreatedAt, a.UpdatedAt} {
		e.time(t)
	}
	e.uint(uint64(len(a.Devices)) + 1)
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
		if d.Events == nil {
			e.uint(0)
		} else {
			e.uint(uint64(len(d.Events)) + 1)
		}
		var prev uint64
		for _, r := range d.Events {
			e.int(int64(r.Entry - prev))
			prev = r.Entry
			e.sym(string(r.Event))
			e.rel(r.At, a.Start)
		}
	}
	return e.b
}

// Times far from the start, unknown symbols and entries out of order
// survive version 2's shortcuts.
func TestAiringCodecEdges(t *testing.T) {
	a := fullAiring()
	far := time.Unix(1<<62+5, 7).UTC()
	a.Devices["d4"] = &broadcast.DeviceAiring{Status: "new-status", Reason: "new-reason", StartedAt: time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC),
		Events: []broadcast.EventRef{{Entry: 9, Event: "received", At: far}, {Entry: 3, Event: "new-event", At: a.Start.Add(-time.Hour)}, {Entry: 1<<64 - 1, At: time.Unix(-1<<62-1, 0).UTC()}}}
	got, err := decodeAiring(a.ID, encodeAiring(a))
	if err != nil {
		t.Fatal(err)
	}
	// JSON cannot show years past 9999: d4 is compared by hand.
	want, have := a.Devices["d4"], got.Devices["d4"]
	delete(a.Devices, "d4")
	delete(got.Devices, "d4")
	if want, have := jsonUTC(t, a), jsonUTC(t, got); want != have {
		t.Errorf("round trip:\n got %s\nwant %s", have, want)
	}
	if have == nil || have.Status != want.Status || have.Reason != want.Reason || !have.StartedAt.Equal(want.StartedAt) || len(have.Events) != len(want.Events) {
		t.Fatalf("d4: %+v, want %+v", have, want)
	}
	for i, r := range want.Events {
		if h := have.Events[i]; h.Entry != r.Entry || h.Event != r.Event || !h.At.Equal(r.At) {
			t.Errorf("d4 event %d: %+v, want %+v", i, h, r)
		}
	}
}

// A device with its four events takes ~60 bytes (it was ~120 in version 1):
// airing records are pages written per group commit.
func TestAiringCodecSize(t *testing.T) {
	a := airing("a00001-0003", "00001", "p1", t0)
	a.Audio = broadcast.Audio{SHA256: strings.Repeat("ab", 32), Format: "mp3", Type: "audio/mpeg", DurationMS: 600_000}
	a.Devices = map[string]*broadcast.DeviceAiring{}
	for j := range 8 {
		d := &broadcast.DeviceAiring{Status: broadcast.StatusAired, StartedAt: t0.Add(1500 * time.Millisecond), PlayedMS: 600_000}
		for k, ev := range cycle {
			d.Events = append(d.Events, broadcast.EventRef{Entry: uint64(1_000_000 + k*2048 + j), Event: ev, At: t0.Add(time.Duration(k)*time.Minute + 250*time.Millisecond)})
		}
		a.Devices[fmt.Sprintf("d00001-%02d", j)] = d
	}
	v1, v2 := len(encodeAiringV1(a)), len(encodeAiring(a))
	t.Logf("8 devices × 4 events: version 1 %d bytes, version 2 %d", v1, v2)
	if v2 > 200+8*60 {
		t.Errorf("version 2: %d bytes", v2)
	}
}

// encodeAiringV1 is version 1 of the codec, as it was written.
func encodeAiringV1(a *broadcast.Airing) []byte {
	e := enc{}
	e.b = append(e.b, 1)
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
		e.uint(uint64(len(a.Devices)) + 1)
	}
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
