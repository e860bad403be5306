package audio

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestWAV(t *testing.T) {
	cases := []struct {
		name     string
		b        []byte
		want     time.Duration
		rate, ch int
	}{
		{"pcm s16 mono", wav(1, 8000, 16, 1.5), 1500 * time.Millisecond, 8000, 1},
		{"pcm s16 stereo 44.1k", wav(2, 44100, 16, 0.25), 250 * time.Millisecond, 44100, 2},
		{"pcm u8", wav(1, 11025, 8, 2), 2 * time.Second, 11025, 1},
		{"float32", riffWAVE(fmtChunk(wavFloat, 2, 48000, 32), chunk("data", make([]byte, 48000*8/10))), 100 * time.Millisecond, 48000, 2},
		{"extensible 24-bit", riffWAVE(fmtChunk(wavExtensible, 3, 8000, 24), chunk("data", make([]byte, 8000*9))), time.Second, 8000, 3},
		// Odd-sized chunks are followed by a pad byte that is not part of
		// their size; unknown chunks are stepped over.
		{"odd chunks", riffWAVE(
			chunk("JUNK", []byte("abc")),
			fmtChunk(wavPCM, 1, 8000, 8),
			chunk("LIST", []byte("INFOINAM\x05\x00\x00\x00Tin\x00\x00")),
			chunk("bext", make([]byte, 603)),
			chunk("data", make([]byte, 4001)),
			chunk("id3 ", []byte("ID3")),
		), 500125 * time.Microsecond, 8000, 1},
		{"data before fmt", riffWAVE(chunk("data", make([]byte, 16000)), fmtChunk(wavPCM, 1, 8000, 16)), time.Second, 8000, 1},
		{"wrong byte rate field", func() []byte {
			b := wav(1, 8000, 16, 1)
			binary.LittleEndian.PutUint32(b[28:], 12345)
			return b
		}(), time.Second, 8000, 1},
		{"streaming size", func() []byte {
			b := wav(1, 8000, 16, 1)
			binary.LittleEndian.PutUint32(b[len(b)-16000-4:], 0xffffffff)
			return b
		}(), time.Second, 8000, 1},
		{"partial last sample frame", riffWAVE(fmtChunk(wavPCM, 2, 8000, 16), chunk("data", make([]byte, 8000*4+3))), time.Second, 8000, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info, err := probeBytes(t, c.b)
			if err != nil {
				t.Fatal(err)
			}
			if info.Format != formatWAV || info.MIME != "audio/wav" || info.Duration != c.want || info.SampleRate != c.rate || info.Channels != c.ch {
				t.Errorf("got %+v, want %v %d Hz %d ch", info, c.want, c.rate, c.ch)
			}
		})
	}
}

func TestWAVCorrupt(t *testing.T) {
	cases := []struct {
		name, msg string
		b         []byte
	}{
		{"truncated data", "data chunk says 16000 bytes but the file ends after 8000: truncated upload?", wav(1, 8000, 16, 1)[:62+8+8000]},
		{"riff header cut", "inside the RIFF header", []byte("RIFF\x00\x00")},
		{"no fmt", "no fmt chunk", riffWAVE(chunk("data", make([]byte, 100)))},
		{"no data", "no data chunk", riffWAVE(fmtChunk(wavPCM, 1, 8000, 16), chunk("LIST", []byte("INFO")))},
		{"empty data", "no whole sample frame", riffWAVE(fmtChunk(wavPCM, 2, 8000, 16), chunk("data", []byte{1, 2}))},
		{"zero channels", "fmt chunk is damaged", riffWAVE(fmtChunk(wavPCM, 0, 8000, 16), chunk("data", make([]byte, 100)))},
		{"short fmt", "fmt chunk is 8 bytes", riffWAVE(chunk("fmt ", make([]byte, 8)), chunk("data", make([]byte, 100)))},
		{"short extensible fmt", "EXTENSIBLE fmt chunk is 18 bytes", riffWAVE(chunk("fmt ", append(fmtChunk(wavExtensible, 1, 8000, 16).body[:16], 0, 0)), chunk("data", make([]byte, 100)))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info, err := probeBytes(t, c.b)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %+v, %v; want ErrCorrupt", info, err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("message %q does not mention %q", err, c.msg)
			}
		})
	}
}
