package devices

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestAuthGuardBacksOffAndSumsUp: after its free failures an address, or a
// user from any address, must wait; the daemon's user never does; the
// refusals of an interval make one log line, and a quiet interval none.
func TestAuthGuardBacksOffAndSumsUp(t *testing.T) {
	var buf bytes.Buffer
	g := newAuthGuard("loaxad", 2, slog.New(slog.NewTextHandler(&buf, nil)))
	now := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC)
	g.now = func() time.Time { return now }

	for range 2 {
		if !g.admit("10.0.0.1:1000", "38001-01") {
			t.Fatal("refused before any failure")
		}
		g.refused("10.0.0.1:1000", "38001-01", "wrong_secret")
	}
	if g.admit("10.0.0.1:2000", "other") {
		t.Fatal("the address is admitted after its free failures")
	}
	if g.admit("10.0.0.2:1000", "38001-01") {
		t.Fatal("the user is admitted from another address after its free failures")
	}
	if !g.admit("10.0.0.1:3000", "loaxad") {
		t.Fatal("the daemon's user waits")
	}
	if !g.admit("10.0.0.3:1000", "38002-01") {
		t.Fatal("another address and user wait")
	}
	now = now.Add(2 * time.Second)
	if !g.admit("10.0.0.1:4000", "38001-01") {
		t.Fatal("still refused after the wait")
	}
	g.accepted("38001-01")

	g.flush()
	g.flush()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines, want one summary:\n%s", len(lines), buf.String())
	}
	for _, want := range []string{"broker refused connections", "refused=2", "throttled=2", "addresses=2", "users=2", "by_reason.wrong_secret=2", "last_reason=wrong_secret"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("the summary lacks %s: %s", want, lines[0])
		}
	}
}
