//go:build !linux

package agent

// kernelClockSynced has no portable answer off Linux; saying "not synced" is
// the honest default.
func kernelClockSynced() bool { return false }
