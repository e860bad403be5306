//go:build !unix

package audittest

// BusyCPU is not measured here; the benchmarks report entries/s only.
func BusyCPU() float64 { return 0 }
