package broadcast

import (
	"bytes"
	"crypto/ed25519"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fastSamples are the payloads devices send, which DecodeEventFast must
// read on its fast path.
func fastSamples(tb testing.TB) [][]byte {
	_, priv, _ := ed25519.GenerateKey(nil)
	sign := func(ev Event, key ed25519.PrivateKey) []byte {
		p, err := SignEvent(ev, key)
		if err != nil {
			tb.Fatal(err)
		}
		return p
	}
	finished := sampleEvent(tb)
	failed := Event{V: 1, ID: "e1", Device: "14755-03", Seq: 1, Airing: "a1", Event: EventFailed, At: mustTime(tb, "2026-12-05T06:45:02Z"), Reason: "power"}
	skipped := failed
	skipped.Event, skipped.Reason, skipped.Rev = EventSkipped, "preempted", 123456789012345678
	received := Event{V: 1, ID: "e2", Device: "d", Seq: 999999999999999999, Airing: "a", Event: EventReceived, At: mustTime(tb, "2026-12-05T06:45:02.123456789+07:00")}
	return [][]byte{sign(finished, priv), sign(finished, nil), sign(failed, priv), sign(skipped, nil), sign(received, priv)}
}

func TestDecodeEventFastTakesDeviceForm(t *testing.T) {
	for _, p := range fastSamples(t) {
		ev, env, ok := scanEvent(p)
		if !ok {
			t.Fatalf("not on the fast path: %s", p)
		}
		checkSameDecoding(t, p)
		if !bytes.Contains(p, env.Body) || env.Body[0] != '{' || ev.Seq == 0 {
			t.Fatalf("%s: body %s, event %+v", p, env.Body, ev)
		}
	}
}

// TestDecodeEventFastFallsBack: every departure from the compact form,
// valid JSON or not, leaves the fast path, and DecodeEvent's answer is the
// answer — an error naming what is wrong, or the event.
func TestDecodeEventFastFallsBack(t *testing.T) {
	p := string(fastSamples(t)[0])
	body := p[len(`{"body":`):strings.Index(p, `,"sig":`)]
	for name, tc := range map[string]struct {
		payload string
		valid   bool // what DecodeEvent says
	}{
		"space":             {strings.Replace(p, `"seq":17`, `"seq": 17`, 1), true},
		"trailing space":    {p + " ", true},
		"escape":            {strings.Replace(p, `"id":"01`, `"id":"\u0030\u0031`, 1), true},
		"key in upper case": {strings.Replace(p, `"seq":`, `"SEQ":`, 1), true},
		"unknown key":       {strings.Replace(p, `"seq":17`, `"seq":17,"extra":[1,{"a":null}]`, 1), true},
		"unknown envelope":  {strings.Replace(p, `{"body":`, `{"x":1,"body":`, 1), true},
		"repeated key":      {strings.Replace(p, `"seq":17`, `"seq":18,"seq":17`, 1), true},
		"repeated body":     {`{"body":{"v":2},` + p[1:], true},
		"null":              {strings.Replace(p, `"clock_synced":true`, `"clock_synced":null`, 1), true},
		"null sig":          {strings.Replace(p, `,"sig":"`, `,"sig":null,"y":"`, 1), true},
		"non-ascii":         {strings.Replace(p, `"id":"01`, `"id":"é01`, 1), false},
		"fraction":          {strings.Replace(p, `"seq":17`, `"seq":17.0`, 1), false},
		"exponent":          {strings.Replace(p, `"seq":17`, `"seq":1e1`, 1), false},
		"negative":          {strings.Replace(p, `"seq":17`, `"seq":-17`, 1), false},
		"leading zero":      {strings.Replace(p, `"seq":17`, `"seq":017`, 1), false},
		"overflow":          {strings.Replace(p, `"seq":17`, `"seq":18446744073709551616`, 1), false},
		"19 digits":         {strings.Replace(p, `"seq":17`, `"seq":1844674407370955161`, 1), true},
		"string seq":        {strings.Replace(p, `"seq":17`, `"seq":"17"`, 1), false},
		"bad time":          {strings.Replace(p, `"at":"2026-12-05T06:45:02+07:00"`, `"at":"2026-12-05 06:45:02"`, 1), false},
		"truncated":         {p[:len(p)-1], false},
		"trailing garbage":  {p + "x", false},
		"no body":           {`{"sig":"abc"}`, false},
		"empty":             {`{}`, false},
		"body not object":   {`{"body":"x"}`, false},
		"invalid event":     {`{"body":` + strings.Replace(body, `"v":1`, `"v":2`, 1) + `}`, false},
		"control char":      {strings.Replace(p, `"id":"01`, "\"id\":\"\t01", 1), false},
		"too large":         {`{"body":` + body + `,"sig":"` + strings.Repeat("x", MaxEventPayload) + `"}`, false},
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, ok := scanEvent([]byte(tc.payload)); ok {
				t.Fatalf("on the fast path: %s", tc.payload)
			}
			if _, _, err := DecodeEvent([]byte(tc.payload)); (err == nil) != tc.valid {
				t.Fatalf("DecodeEvent: %v", err)
			}
			checkSameDecoding(t, []byte(tc.payload))
		})
	}
}

// checkSameDecoding fails unless DecodeEventFast and DecodeEvent agree on
// payload: the same event (times at the same instant in the same offset),
// the same envelope, the same error.
func checkSameDecoding(t *testing.T, payload []byte) {
	t.Helper()
	wantEv, wantEnv, wantErr := DecodeEvent(payload)
	ev, env, err := DecodeEventFast(payload)
	if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
		t.Fatalf("%q: error %v, DecodeEvent says %v", payload, err, wantErr)
	}
	if !bytes.Equal(env.Body, wantEnv.Body) || env.Sig != wantEnv.Sig {
		t.Fatalf("%q: envelope %q %q, DecodeEvent says %q %q", payload, env.Body, env.Sig, wantEnv.Body, wantEnv.Sig)
	}
	sameTime := func(a, b time.Time) bool {
		return a.Equal(b) && a.Format(time.RFC3339Nano) == b.Format(time.RFC3339Nano)
	}
	if !sameTime(ev.At, wantEv.At) || !sameTime(ev.StartedAt, wantEv.StartedAt) {
		t.Fatalf("%q: times %s %s, DecodeEvent says %s %s", payload, ev.At, ev.StartedAt, wantEv.At, wantEv.StartedAt)
	}
	ev.At, ev.StartedAt, wantEv.At, wantEv.StartedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(ev, wantEv) {
		t.Fatalf("%q: event %+v, DecodeEvent says %+v", payload, ev, wantEv)
	}
}

func FuzzDecodeEventFast(f *testing.F) {
	for _, p := range fastSamples(f) {
		f.Add(p)
	}
	f.Add([]byte(`{"body":{"v":1,"id":"a","device":"d","seq":1,"airing":"x","event":"failed","at":"2026-12-05T06:45:02+07:00","reason":"power"}}`))
	f.Add([]byte(`{"body":{"v":1,"id":"a","device":"d","seq":1,"airing":"x","event":"ready","at":"2026-12-05T06:45:02Z","clock_synced":false,"played_ms":0},"sig":""}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		checkSameDecoding(t, payload)
	})
}

func BenchmarkDecodeEvent(b *testing.B) {
	p := fastSamples(b)[0]
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := DecodeEvent(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := DecodeEventFast(p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
