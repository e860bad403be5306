// Package audittest has what the verification benchmarks of audit and
// storage measure against: the rate at which every core checks bare
// ed25519 signatures, and the process's CPU time.
package audittest

import (
	"crypto/ed25519"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// AllCoresVerifyRate is how many signatures of msg every core checks per
// second, for about d, and the CPU time in µs each took (0 where BusyCPU is
// not measured): the bound the verification goal of docs/benchmarks.md is set against.
func AllCoresVerifyRate(msg []byte, d time.Duration) (perSecond, cpuMicros float64) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	sig := ed25519.Sign(priv, msg)
	var total atomic.Int64
	var wg sync.WaitGroup
	start, startCPU := time.Now(), BusyCPU()
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			n := int64(0)
			for time.Since(start) < d {
				for range 16 {
					if !ed25519.Verify(pub, msg, sig) {
						panic("bad signature")
					}
				}
				n += 16
			}
			total.Add(n)
		})
	}
	wg.Wait()
	took, cpu := time.Since(start), BusyCPU()-startCPU
	n := float64(total.Load())
	return n / took.Seconds(), cpu / n * 1e6
}
