// Package audiotest makes small real audio files for tests and demos, so
// that every test that uploads a programme uses the same, valid audio.
package audiotest

import (
	"bytes"
	"encoding/binary"
	"time"
)

// WAV returns a mono 16-bit PCM WAV at 8 kHz of length d: a saw tone that
// the daemon's format probe accepts and measures exactly.
func WAV(d time.Duration) []byte { return Tone(d, 64) }

// Tone is WAV with a saw of the given period in samples (at least 2), so
// that programmes of a test or a benchmark can each have their own sha256.
func Tone(d time.Duration, period int) []byte {
	period = max(period, 2)
	const rate = 8000
	n := int(d.Seconds() * rate)
	var b bytes.Buffer
	b.Grow(44 + 2*n)
	w := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("RIFF")
	w(uint32(36 + 2*n))
	b.WriteString("WAVEfmt ")
	w(uint32(16))
	w(uint16(1))        // PCM
	w(uint16(1))        // mono
	w(uint32(rate))     // sample rate
	w(uint32(rate * 2)) // byte rate
	w(uint16(2))        // block align
	w(uint16(16))       // bits per sample
	b.WriteString("data")
	w(uint32(2 * n))
	samples := make([]int16, n)
	for i := range samples {
		samples[i] = int16((i % period) * (16384 / period))
	}
	w(samples)
	return b.Bytes()
}

// MP3 returns n frames of MPEG-1 Layer III at 128 kbit/s, 44.1 kHz, stereo
// (417 bytes and 1152 samples each, silent): the daemon's probe accepts and
// measures it.
func MP3(n int) []byte {
	const frameLen = 144000 * 128 / 44100
	frame := make([]byte, frameLen)
	copy(frame, []byte{0xff, 0xfb, 0x90, 0x00})
	return bytes.Repeat(frame, n)
}
