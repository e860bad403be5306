//go:build !unix

package audit

// busyCPU is not measured here; the benchmarks report entries/s only.
func busyCPU() float64 { return 0 }
