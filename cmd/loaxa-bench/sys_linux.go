package main

import (
	"fmt"
	"syscall"
	"time"
)

// childAttr makes a child process die with its parent: a benchmark killed
// half-way must not leave 10,000 MQTT connections or a Mosquitto behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// raiseFileLimit lifts the soft limit on open files to the hard one. Every
// MQTT connection is a file on both ends, and the default soft limit (often
// 1,024) is far below the 10,047 devices of a national run.
func raiseFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("read the open-files limit: %w", err)
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, fmt.Errorf("raise the open-files limit to %d: %w", l.Max, err)
		}
	}
	return l.Cur, nil
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
