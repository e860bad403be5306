package devices

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/loaxa/loaxa/broadcast"
)

// FuzzHandleEvent feeds arbitrary payloads, on arbitrary device topics,
// through the event path with the real store. Nothing may panic; whatever
// passes validation must be a well-formed event of that registered, enabled
// device, with a signature that verifies; every refusal must carry one of the
// fixed reasons (they label a metric).
func FuzzHandleEvent(f *testing.F) {
	fx := newFixture(f)
	h, err := NewHub(HubOptions{BrokerURL: "tcp://127.0.0.1:1", Events: eventLog{fx.store}, Devices: fx.store, Workers: 1})
	if err != nil {
		f.Fatal(err)
	}
	seed := func(d testDevice, ev broadcast.Event) {
		p, err := broadcast.SignEvent(ev, d.Key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(d.ID, p)
	}
	seed(fx.a, finished(fx.a, 1, airingA))
	seed(fx.u, finished(fx.u, 1, airingA))
	seed(fx.b, finished(fx.b, 1, airingB))
	seed(fx.c, finished(fx.c, 1, airingA))
	seed(fx.u, broadcast.Event{V: 1, ID: "x", Device: fx.u.ID, Seq: 2, Airing: airingA, Event: broadcast.EventFailed, At: t0, Reason: "power"})
	f.Add(fx.a.ID, []byte(`{"body":{"v":1},"sig":"!!"}`))
	f.Add(fx.a.ID, []byte(`{"body":"not an object"}`))
	f.Add(fx.u.ID, []byte(`{"body":{"v":1,"id":"a","device":"38001-03","seq":18446744073709551615,"airing":"x","event":"ready","at":"2026-03-02T06:00:00Z"}}`))
	f.Add("", []byte(`null`))
	f.Add(fx.a.ID, []byte{})

	ctx := context.Background()
	f.Fuzz(func(t *testing.T, device string, payload []byte) {
		in := inbound{device: device, payload: payload, at: t0, ack: func() {}}
		ev, dev, _, err := h.validateEvent(in)
		if err != nil {
			var pe *broadcast.ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("an error that is not a refusal, for a payload: %v", err)
			}
			if !slices.Contains(rejectReasons, pe.Reason) {
				t.Fatalf("refusal reason %q is not in the fixed set", pe.Reason)
			}
		} else {
			if ev.Device != device || dev.ID != device || dev.Disabled {
				t.Fatalf("accepted event %+v of device %+v on the topic of %q", ev, dev, device)
			}
			if err := ev.Validate(); err != nil {
				t.Fatalf("accepted an invalid event: %v", err)
			}
			_, env, err := broadcast.DecodeEvent(payload)
			if err != nil || env.VerifySignature(dev.PublicKey) != nil {
				t.Fatalf("accepted an event whose signature does not verify: %v", err)
			}
		}
		// The whole path, the as-run log included, called directly so that
		// a panic is not hidden by the worker's recovery.
		h.handleEvent(ctx, in)
	})
}
