package audio

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func ms(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

func near(got, want, tol time.Duration) bool {
	d := got - want
	return -tol <= d && d <= tol
}

// Fixtures made by real encoders (see testdata/README.md). want is what the
// encoder was asked to produce; tol covers what the format itself cannot
// tell us: without a Xing/LAME header an MP3's length includes the encoder's
// delay and the padding of its last frame (one frame is 72 ms at 8 kHz),
// and a WebM without Duration is measured to the end of its last 20 ms
// frame.
var fixtures = []struct {
	file       string
	format     string
	want, tol  time.Duration
	rate, chns int
}{
	{"cbr32k_mono_22050.mp3", formatMP3, 3 * time.Second, ms(30), 22050, 1},
	{"vbr_xing_mono_44100.mp3", formatMP3, 2 * time.Second, ms(30), 44100, 1},
	{"vbr_noxing_id3v1_8000.mp3", formatMP3, 3 * time.Second, ms(250), 8000, 1},
	{"s16_mono_8000.wav", formatWAV, 2 * time.Second, 0, 8000, 1},
	{"s24_mono_8000.wav", formatWAV, 1 * time.Second, 0, 8000, 1},
	{"f32_stereo_8000.wav", formatWAV, 500 * time.Millisecond, 0, 8000, 2},
	{"ffmpeg_mono_16k.opus", formatOgg, 3 * time.Second, ms(30), 48000, 1},
	{"opusenc_mono_12k.opus", formatOgg, 3 * time.Second, ms(30), 48000, 1},
	{"ffmpeg_mono_16k.webm", formatWebM, 3 * time.Second, ms(30), 48000, 1},
	{"ffmpeg_pipe_mono_16k.webm", formatWebM, 3 * time.Second, ms(30), 48000, 1},
}

var unsupportedFixtures = []string{"vorbis.ogg", "vorbis.webm", "flac.flac", "aac.aac", "aac.m4a"}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFixtures(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.file, func(t *testing.T) {
			fh, err := os.Open(filepath.Join("testdata", f.file))
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			st, err := fh.Stat()
			if err != nil {
				t.Fatal(err)
			}
			info, err := Probe(fh, st.Size())
			if err != nil {
				t.Fatalf("Probe: %v", err)
			}
			if info.Format != f.format || !near(info.Duration, f.want, f.tol) || info.SampleRate != f.rate || info.Channels != f.chns {
				t.Errorf("got %+v; want %s, %v±%v, %d Hz, %d ch", info, f.format, f.want, f.tol, f.rate, f.chns)
			}
			wantMIME := map[string]string{formatMP3: "audio/mpeg", formatWAV: "audio/wav", formatOgg: "audio/ogg", formatWebM: "audio/webm"}[f.format]
			if info.MIME != wantMIME {
				t.Errorf("MIME %q, want %q", info.MIME, wantMIME)
			}
		})
	}
	for _, name := range unsupportedFixtures {
		t.Run(name, func(t *testing.T) {
			_, err := probeBytes(t, readFixture(t, name))
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("got %v, want ErrUnsupported", err)
			}
		})
	}
}

func TestNotAudio(t *testing.T) {
	random := make([]byte, 200<<10)
	x := uint32(2463534242)
	for i := range random {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		random[i] = byte(x)
	}
	cases := map[string][]byte{
		"empty":       {},
		"zeros":       make([]byte, 4096),
		"one byte":    {0xff},
		"text":        []byte("Lịch phát thanh tháng 6\nSáng: 5h30 bản tin xã\n"),
		"png":         []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x02\x00\x00\x00\x90\x91h6"),
		"jpeg":        []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
		"pdf":         []byte("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"),
		"random":      random,
		"riff avi":    []byte("RIFF\x10\x00\x00\x00AVI LIST\x04\x00\x00\x00hdrl"),
		"riff webp":   []byte("RIFF\x10\x00\x00\x00WEBPVP8 \x04\x00\x00\x00abcd"),
		"html":        []byte("<!doctype html><html><body>404</body></html>"),
		"ogg vorbis":  oggPageBytes(oggBOS, 0, 1, 0, []byte("\x01vorbis\x00\x00\x00\x00\x01\x40\x1f\x00\x00")),
		"ogg flac":    oggPageBytes(oggBOS, 0, 1, 0, []byte("\x7fFLAC\x01\x00\x00\x01fLaC\x00\x00\x00\x22")),
		"flac":        []byte("fLaC\x00\x00\x00\x22\x10\x00\x10\x00"),
		"adts":        {0xff, 0xf1, 0x50, 0x80, 0x02, 0x1f, 0xfc},
		"mp2":         concat(mpegSpec{mpeg1, 128, 44100, false, false}.header(), make([]byte, 500)),
		"id3+flac":    concat(id3v2(20, false), []byte("fLaC\x00\x00\x00\x22")),
		"webm vorbis": webm(webmSpec{d: 1, perCluster: 50, codec: "A_VORBIS"}),
		"matroska":    webm(webmSpec{d: 1, perCluster: 50, docType: "matroska"}),
		"webm video only": append(webmHeader("webm"), el(idSegment, el(idTracks, el(idTrackEntry,
			elUint(idTrackNumber, 1), elUint(idTrackType, 1), elStr(idCodecID, "V_VP8"))))...),
		"wav adpcm": riffWAVE(fmtChunk(0x0011, 1, 8000, 4), chunk("data", make([]byte, 800))),
	}
	// The MPEG-1 layer II header above has layer bits 10: patch it in.
	cases["mp2"][1] = 0xfd
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			info, err := probeBytes(t, b)
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("got %+v, %v; want ErrUnsupported", info, err)
			}
			if !strings.Contains(err.Error(), "upload MP3, WAV, Ogg/Opus or WebM/Opus") {
				t.Errorf("message does not say what to upload instead: %v", err)
			}
		})
	}
}

// TestTruncation cuts every fixture at every length. A cut file must either
// still measure (no longer than the whole) or be ErrCorrupt: once the magic
// number is in, it is never "unsupported", and it never panics.
func TestTruncation(t *testing.T) {
	type input struct {
		name  string
		b     []byte
		magic int // shortest cut that identifies the format
	}
	var inputs []input
	for _, f := range fixtures {
		b := readFixture(t, f.file)
		magic := 4
		if bytes.HasPrefix(b, []byte("ID3")) {
			magic = 3
		}
		inputs = append(inputs, input{f.file, b, magic})
	}
	m1 := mpegSpec{mpeg1, 128, 44100, false, false}
	inputs = append(inputs,
		input{"synth wav", wav(2, 8000, 16, 0.3), 4},
		input{"synth mp3 id3 footer", concat(id3v2(300, true), mp3Frames(m1, 20, 128, 64, 320)), 3},
		input{"synth mp3 xing", concat(xingFrame(m1, "Xing", 20, 20*417+417, true, 576, 300), mp3Frames(m1, 20)), 4},
		input{"synth ogg", oggOpus(0.5, 312, 5), 4},
		input{"synth webm mediarecorder", webm(webmSpec{d: 0.5, perCluster: 10, unknownSize: true}), 4},
		input{"synth webm duration", webm(webmSpec{d: 0.5, perCluster: 10, duration: 500}), 4},
	)
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			full, err := probeBytes(t, in.b)
			if err != nil {
				t.Fatalf("whole file: %v", err)
			}
			measured, corrupt := 0, 0
			for n := in.magic; n < len(in.b); n++ {
				info, err := probeBytes(t, in.b[:n])
				switch {
				case err == nil:
					measured++
					if info.Duration <= 0 || info.Duration > full.Duration+ms(30) || info.Format != full.Format {
						t.Fatalf("cut at %d: %+v (whole file %v)", n, info, full.Duration)
					}
				case errors.Is(err, ErrCorrupt):
					corrupt++
				default:
					t.Fatalf("cut at %d of %d: %v", n, len(in.b), err)
				}
			}
			t.Logf("%d cuts measured, %d corrupt", measured, corrupt)
		})
	}
}

// TestErrorMessages checks that errors say what is wrong in terms an
// operator can act on.
func TestErrorMessages(t *testing.T) {
	w := wav(1, 8000, 16, 1)
	_, err := probeBytes(t, w[:400])
	want := "wav: data chunk says 16000 bytes but the file ends after 330: truncated upload?: corrupt audio"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	_, err = probeBytes(t, nil)
	if err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty file: %v", err)
	}
}

// failingReader fails after a number of bytes, like a disk or network error.
type failingReader struct {
	b     []byte
	limit int64
}

var errDisk = errors.New("disk on fire")

func (f failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.limit {
		return 0, errDisk
	}
	return copy(p, f.b[off:]), nil
}

func TestReaderErrorsPassThrough(t *testing.T) {
	for _, name := range []string{"cbr32k_mono_22050.mp3", "s16_mono_8000.wav", "ffmpeg_mono_16k.opus", "ffmpeg_pipe_mono_16k.webm"} {
		b := readFixture(t, name)
		_, err := Probe(failingReader{b, 200}, int64(len(b)))
		if !errors.Is(err, errDisk) {
			t.Errorf("%s: got %v, want the reader's error", name, err)
		}
	}
	// A reader shorter than the size it was given is an I/O problem, not
	// the uploader's.
	b := readFixture(t, "s16_mono_8000.wav")
	_, err := Probe(bytes.NewReader(b[:100]), int64(len(b)))
	if err == nil || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnsupported) {
		t.Errorf("short reader: got %v", err)
	}
}
