//go:build unix

package audittest

import "syscall"

// BusyCPU is the CPU time this process has used, user and system, in
// seconds: unlike wall time, what other processes on a shared machine take
// is not in it.
func BusyCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
