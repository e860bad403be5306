package broadcast

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const sampleSHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func sampleEvent(t testing.TB) Event {
	return Event{V: 1, ID: "01JF3QB6ZP0G9W7N5H3K2M1XYZ", Device: "14755-03", Seq: 17, Airing: "01JF3Q7W6Z9M2X8K4T5R1N0ABC", Rev: 42,
		Event: EventFinished, At: mustTime(t, "2026-12-05T06:45:02+07:00"), StartedAt: mustTime(t, "2026-12-05T06:30:01+07:00"),
		PlayedMS: 900412, SHA256: sampleSHA, ClockSynced: true}
}

func TestSignedEventRoundTrip(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	payload, err := SignEvent(sampleEvent(t), priv)
	if err != nil {
		t.Fatal(err)
	}
	ev, env, err := DecodeEvent(payload)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Seq != 17 || ev.Device != "14755-03" || !ev.StartedAt.Equal(sampleEvent(t).StartedAt) {
		t.Fatalf("decoded %+v", ev)
	}
	if err := env.VerifySignature(pub); err != nil {
		t.Fatalf("signature: %v", err)
	}
	other, _, _ := ed25519.GenerateKey(nil)
	if err := env.VerifySignature(other); !isReject(err, RejectSignature) {
		t.Fatalf("verified with another key: %v", err)
	}
	if err := env.VerifySignature(nil); !isReject(err, RejectSignature) {
		t.Fatalf("a signed event from a device without a key was accepted: %v", err)
	}
	// One changed byte in the body breaks the signature.
	forged := bytes.Replace(payload, []byte(`"played_ms":900412`), []byte(`"played_ms":900413`), 1)
	_, env, err = DecodeEvent(forged)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.VerifySignature(pub); !isReject(err, RejectSignature) {
		t.Fatalf("a forged body verified: %v", err)
	}
	unsigned, _ := SignEvent(sampleEvent(t), nil)
	_, env, _ = DecodeEvent(unsigned)
	if err := env.VerifySignature(pub); !isReject(err, RejectSignature) {
		t.Fatalf("an unsigned event from a device with a key was accepted: %v", err)
	}
}

func isReject(err error, reason string) bool {
	var pe *ProtocolError
	return errors.As(err, &pe) && pe.Reason == reason
}

func TestDecodeEventRejects(t *testing.T) {
	good, _ := json.Marshal(sampleEvent(t))
	mutate := func(f func(m map[string]any)) string {
		var m map[string]any
		_ = json.Unmarshal(good, &m)
		f(m)
		b, _ := json.Marshal(m)
		return `{"body":` + string(b) + `}`
	}
	for name, tc := range map[string]struct{ payload, reason string }{
		"not json":       {`{"body":`, RejectMalformed},
		"no body":        {`{"sig":"x"}`, RejectMalformed},
		"body not obj":   {`{"body":[1]}`, RejectMalformed},
		"too large":      {`{"body":{"pad":"` + strings.Repeat("x", MaxEventPayload) + `"}}`, RejectTooLarge},
		"version":        {mutate(func(m map[string]any) { m["v"] = 2 }), RejectVersion},
		"seq zero":       {mutate(func(m map[string]any) { m["seq"] = 0 }), RejectSchema},
		"seq negative":   {mutate(func(m map[string]any) { m["seq"] = -1 }), RejectMalformed},
		"bad device":     {mutate(func(m map[string]any) { m["device"] = "a/b" }), RejectSchema},
		"unknown event":  {mutate(func(m map[string]any) { m["event"] = "exploded" }), RejectSchema},
		"finished bare":  {mutate(func(m map[string]any) { delete(m, "started_at") }), RejectSchema},
		"bad sha":        {mutate(func(m map[string]any) { m["sha256"] = "XYZ" }), RejectSchema},
		"failed reason":  {mutate(func(m map[string]any) { m["event"] = "failed"; m["reason"] = "bored" }), RejectSchema},
		"skipped reason": {mutate(func(m map[string]any) { m["event"] = "skipped"; m["reason"] = "" }), RejectSchema},
		"no at":          {mutate(func(m map[string]any) { delete(m, "at") }), RejectSchema},
		"bad at":         {mutate(func(m map[string]any) { m["at"] = "yesterday" }), RejectMalformed},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := DecodeEvent([]byte(tc.payload))
			if !isReject(err, tc.reason) {
				t.Fatalf("err = %v, want reason %s", err, tc.reason)
			}
		})
	}
}

func FuzzDecodeEvent(f *testing.F) {
	_, priv, _ := ed25519.GenerateKey(nil)
	p, _ := SignEvent(sampleEvent(f), priv)
	f.Add(p)
	f.Add([]byte(`{"body":{"v":1}}`))
	f.Add([]byte(`{"body":{"v":1,"id":"a","device":"d","seq":1,"airing":"x","event":"failed","at":"2026-12-05T06:45:02+07:00","reason":"power"}}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		ev, env, err := DecodeEvent(payload)
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.Reason == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if ev.Validate() != nil || ev.Seq == 0 || !ValidID(ev.Device) {
			t.Fatalf("accepted an invalid event %+v", ev)
		}
		_ = env.VerifySignature(nil)
	})
}

func FuzzDecodeSnapshot(f *testing.F) {
	snap := Snapshot{V: 1, Device: "14755-03", Station: "14755", Rev: 42, IssuedAt: mustTime(f, "2026-12-01T05:00:00+07:00"),
		Items: []Item{{Airing: "A1", Programme: "P1", Title: "Chuyển đổi số", Kind: KindPremiere,
			Start: mustTime(f, "2026-12-05T06:30:00+07:00"), NotAfter: mustTime(f, "2026-12-05T06:45:00+07:00"),
			Audio: AudioRef{SHA256: sampleSHA, Size: 1, URL: "http://x/audio/" + sampleSHA}}}}
	b, _ := json.Marshal(snap)
	f.Add(b)
	f.Add([]byte(`{"v":1,"device":"d","rev":1,"items":[]}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		s, err := DecodeSnapshot(payload)
		if err != nil {
			return
		}
		for _, it := range s.Items {
			if !it.NotAfter.After(it.Start) || it.Audio.URL == "" {
				t.Fatalf("accepted a bad item %+v", it)
			}
		}
	})
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add([]byte(`{"v":1,"type":"receipt","upto_seq":17,"log_hash":"ab"}`))
	f.Add([]byte(`{"v":1,"type":"play_now","item":{}}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		c, err := DecodeCommand(payload)
		if err == nil && c.Type == CmdPlayNow && c.Item == nil {
			t.Fatal("play_now without an item accepted")
		}
	})
}
