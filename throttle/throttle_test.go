package throttle

import (
	"testing"
	"time"
)

func TestBackoffDoublesAfterFreeFailuresAndResets(t *testing.T) {
	t0 := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	b := New(3, time.Second, 8*time.Second)
	for i := range 2 {
		if d := b.Fail("10.0.0.1", t0); d != 0 {
			t.Fatalf("failure %d is free, got a wait of %s", i+1, d)
		}
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	for i, w := range want {
		if d := b.Fail("10.0.0.1", t0); d != w {
			t.Fatalf("failure %d: wait %s, want %s", i+3, d, w)
		}
	}
	if d := b.Wait("10.0.0.1", t0.Add(time.Second)); d != 7*time.Second {
		t.Fatalf("wait after a second: %s", d)
	}
	if d := b.Wait("10.0.0.2", t0); d != 0 {
		t.Fatalf("another key waits %s", d)
	}
	b.Reset("10.0.0.1")
	if d := b.Wait("10.0.0.1", t0); d != 0 {
		t.Fatalf("after Reset: wait %s", d)
	}
	// Failures long ago are forgotten.
	for range 4 {
		b.Fail("k", t0)
	}
	if d := b.Wait("k", t0); d == 0 {
		t.Fatal("four failures of three free do not wait")
	}
	if d := b.Fail("k", t0.Add(time.Hour)); d != 0 {
		t.Fatalf("a failure an hour later still waits %s", d)
	}
}

func TestBackoffBoundsItsKeys(t *testing.T) {
	t0 := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	b := New(1, time.Minute, time.Minute)
	b.maxKeys = 100
	for i := range 1000 {
		b.Fail(string(rune(i+0x100)), t0)
	}
	if n := b.Len(); n > 100 {
		t.Fatalf("%d keys remembered, at most 100", n)
	}
	if d := b.Wait(string(rune(0x100)), t0); d != time.Minute {
		t.Fatalf("a remembered key waits %s, want 1m", d)
	}
}

func TestBackoffOff(t *testing.T) {
	b := New(-1, time.Second, time.Second)
	for range 10 {
		if d := b.Fail("k", time.Now()); d != 0 {
			t.Fatalf("a disabled backoff made a key wait %s", d)
		}
	}
}
