package audio

import (
	"bytes"
	"testing"
)

// bigInputs are ~10 MB programmes in each format.
func bigInputs() []struct {
	name string
	data []byte
} {
	const size = 10 << 20
	m1 := mpegSpec{mpeg1, 128, 44100, false, false}
	n := size / 417
	packet80 := append([]byte{31 << 3}, make([]byte, 79)...)
	return []struct {
		name string
		data []byte
	}{
		{"mp3-xing", concat(id3v2(4000, false), xingFrame(m1, "Xing", n, (n+1)*417, true, 576, 1000), mp3Frames(m1, n), id3v1())},
		{"mp3-vbr-scan", concat(id3v2(4000, false), mp3Frames(m1, size/600, 128, 320, 96, 160), id3v1())},
		{"wav", wav(2, 44100, 16, size/(44100*4))},
		{"ogg-opus", oggOpus(size/4/50, 312, 50)},
		// 80-byte packets: 32 kbit/s, what browsers record speech at.
		{"webm-mediarecorder", webm(webmSpec{d: size / 96 / 50, perCluster: 250, unknownSize: true, packet: packet80})},
		{"webm-duration", webm(webmSpec{d: size / 96 / 50, perCluster: 250, duration: size / 96 / 50 * 1000, packet: packet80})},
	}
}

// TestProbeReadsLittle pins down that probing costs a sliver of the file
// for every format except MediaRecorder WebM, whose unknown-size clusters
// can only be measured by stepping through every block.
func TestProbeReadsLittle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 60 MB of input")
	}
	limits := map[string]float64{
		"mp3-xing":           0.001,
		"mp3-vbr-scan":       0.01, // 4 bytes of every frame
		"wav":                0.001,
		"ogg-opus":           0.01,
		"webm-mediarecorder": 1.01,
		"webm-duration":      0.001,
	}
	for _, c := range bigInputs() {
		cr := &countingReader{r: bytes.NewReader(c.data)}
		if _, err := Probe(cr, int64(len(c.data))); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		frac := float64(cr.n) / float64(len(c.data))
		t.Logf("%-20s read %8d of %8d bytes (%.4f%%) in %d ReadAt calls", c.name, cr.n, len(c.data), 100*frac, cr.calls)
		if frac > limits[c.name] {
			t.Errorf("%s: read %.2f%% of the file", c.name, 100*frac)
		}
	}
}

// BenchmarkProbe measures ~10 MB programmes and reports, per probe, how many
// bytes were read (read-B/op) and how many ReadAt calls were made.
func BenchmarkProbe(b *testing.B) {
	for _, c := range bigInputs() {
		b.Run(c.name, func(b *testing.B) {
			cr := &countingReader{r: bytes.NewReader(c.data)}
			b.SetBytes(int64(len(c.data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Probe(cr, int64(len(c.data))); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(c.data)), "file-B")
			b.ReportMetric(float64(cr.n)/float64(b.N), "read-B/op")
			b.ReportMetric(float64(cr.calls)/float64(b.N), "ReadAt/op")
		})
	}
}
