package agent

import "golang.org/x/sys/unix"

// kernelClockSynced asks adjtimex: the kernel answers TIME_ERROR while no
// time source (ntpd, chrony, systemd-timesyncd) disciplines the clock. A
// receiver that booted without a network keeps 1970 or its RTC's guess until
// then, which the daemon must know to weigh the device's evidence.
func kernelClockSynced() bool {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	return err == nil && state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0
}
