//go:build !linux

package main

import (
	"errors"
	"syscall"
	"time"
)

// The benchmark reads /proc and relies on Linux process attributes; on
// other systems it builds, so that `go build ./...` works everywhere, but
// its RSS figures are missing and its open-files limit is left as it is.

func childAttr() *syscall.SysProcAttr { return nil }

func raiseFileLimit() (uint64, error) {
	return 0, errors.New("raising the open-files limit is only done on Linux")
}

// processCPU is unknown here: settle then does not wait.
func processCPU() time.Duration { return 0 }
