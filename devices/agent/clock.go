package agent

import "time"

// Clock is where the agent reads the time and waits for it. Tests replace it
// with a fake that they advance by hand, so that an airing "in ten minutes"
// takes no time to test.
type Clock interface {
	Now() time.Time
	// After sends the clock's time on the channel once d has passed on this
	// clock. The agent may abandon the channel before it fires.
	After(d time.Duration) <-chan time.Time
}

// SyncedClock is a Clock that knows whether it was set from a trusted source
// (NTP or another); events carry the answer as clock_synced. A Clock without
// this method is taken as not synced.
type SyncedClock interface {
	Synced() bool
}

// SystemClock is the machine's clock. Synced asks the kernel (adjtimex on
// Linux) whether NTP has disciplined it.
type SystemClock struct{}

// Now returns the local time.
func (SystemClock) Now() time.Time { return time.Now() }

// After waits on the monotonic clock.
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Synced reports whether the kernel considers the clock synchronised.
func (SystemClock) Synced() bool { return kernelClockSynced() }

func clockSynced(c Clock) bool {
	s, ok := c.(SyncedClock)
	return ok && s.Synced()
}
