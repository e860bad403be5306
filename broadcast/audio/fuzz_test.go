package audio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// FuzzProbe checks that no input panics, hangs or escapes the two error
// kinds, and that success always means a positive duration.
func FuzzProbe(f *testing.F) {
	files, err := filepath.Glob("testdata/*.*")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		if filepath.Ext(name) == ".md" {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	m1 := mpegSpec{mpeg1, 128, 44100, false, false}
	f.Add(concat(id3v2(30, true), xingFrame(m1, "Info", 5, 6*417, true, 576, 100), mp3Frames(m1, 5)))
	f.Add(mp3Frames(mpegSpec{mpeg25, 8, 8000, true, false}, 4, 8, 16, 160))
	f.Add(concat(vbriFrame(m1, 3, 4*417), mp3Frames(m1, 3)))
	f.Add(wav(2, 8000, 16, 0.01))
	f.Add(riffWAVE(fmtChunk(wavExtensible, 1, 8000, 24), chunk("data", make([]byte, 30))))
	f.Add(oggOpus(0.1, 312, 2))
	f.Add(webm(webmSpec{d: 0.1, perCluster: 2, unknownSize: true}))
	f.Add(webm(webmSpec{d: 0.1, perCluster: 2, duration: 100}))
	f.Fuzz(checkProbe)
}

func checkProbe(t *testing.T, b []byte) {
	info, err := Probe(bytes.NewReader(b), int64(len(b)))
	switch {
	case err == nil:
		if info.Duration <= 0 || info.Format == "" || info.MIME == "" {
			t.Fatalf("success without a duration: %+v", info)
		}
		if info.Duration > maxPlausible(int64(len(b))) {
			t.Fatalf("implausible %v from %d bytes", info.Duration, len(b))
		}
	case errors.Is(err, ErrCorrupt) == errors.Is(err, ErrUnsupported):
		t.Fatalf("error wraps neither or both sentinels: %v", err)
	}
}

// FuzzOggPages is FuzzProbe with every Ogg page's CRC made right after
// mutation; otherwise nearly every mutant dies at the first CRC check and
// the page logic behind it goes unexplored.
func FuzzOggPages(f *testing.F) {
	for _, name := range []string{"ffmpeg_mono_16k.opus", "opusenc_mono_12k.opus", "vorbis.ogg"} {
		f.Add(readFixture(f, name))
	}
	f.Add(oggOpus(0.2, 312, 3))
	f.Add(concat(oggOpus(0.1, 0, 1), oggPageBytes(0, 1<<40, 7, 9, []byte("x"))))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkProbe(t, fixOggCRCs(b))
	})
}

// fixOggCRCs rewrites the CRC of every complete page that starts with a
// capture pattern.
func fixOggCRCs(in []byte) []byte {
	b := append([]byte(nil), in...)
	for i := 0; i+oggHeaderLen <= len(b); i++ {
		if string(b[i:i+4]) != "OggS" {
			continue
		}
		n := int(b[i+26])
		if i+oggHeaderLen+n > len(b) {
			continue
		}
		l := oggHeaderLen + n
		for _, s := range b[i+oggHeaderLen : i+oggHeaderLen+n] {
			l += int(s)
		}
		if i+l > len(b) {
			continue
		}
		page := b[i : i+l]
		binary.LittleEndian.PutUint32(page[22:], 0)
		binary.LittleEndian.PutUint32(page[22:], oggCRC(0, page))
	}
	return b
}

// countingReader counts what Probe reads, to show it reads far less than
// the file.
type countingReader struct {
	r     *bytes.Reader
	n     int64
	calls int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	atomic.AddInt64(&c.calls, 1)
	n, err := c.r.ReadAt(p, off)
	atomic.AddInt64(&c.n, int64(n))
	return n, err
}
