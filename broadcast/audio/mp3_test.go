package audio

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestMP3(t *testing.T) {
	m1 := mpegSpec{mpeg1, 128, 44100, false, false}   // 417-byte frames of 1152 samples
	m2 := mpegSpec{mpeg2, 64, 24000, true, false}     // MPEG-2, mono
	m25 := mpegSpec{mpeg25, 32, 8000, true, false}    // MPEG-2.5, the 8 kHz telephone-quality case
	m1mono := mpegSpec{mpeg1, 64, 32000, true, false} // for Xing at the mono offset
	frames := func(m mpegSpec, n int) time.Duration {
		return samplesToDuration(int64(n*m.samples()), int64(m.rate))
	}

	cases := []struct {
		name     string
		b        []byte
		want     time.Duration
		rate, ch int
	}{
		{"mpeg1 cbr", mp3Frames(m1, 100), frames(m1, 100), 44100, 2},
		{"mpeg2 cbr", mp3Frames(m2, 100), frames(m2, 100), 24000, 1},
		{"mpeg2.5 cbr", mp3Frames(m25, 100), frames(m25, 100), 8000, 1},
		{"vbr without header", mp3Frames(m1, 100, 32, 320, 128, 64, 256), frames(m1, 100), 44100, 2},
		{"padded frames", mp3Frames(mpegSpec{mpeg1, 128, 44100, false, true}, 50), frames(m1, 50), 44100, 2},
		{"id3v2", concat(id3v2(1000, false), mp3Frames(m1, 30)), frames(m1, 30), 44100, 2},
		{"id3v2.4 with footer", concat(id3v2(999, true), mp3Frames(m1, 30)), frames(m1, 30), 44100, 2},
		{"two id3v2 tags", concat(id3v2(10, false), id3v2(20, false), mp3Frames(m1, 30)), frames(m1, 30), 44100, 2},
		{"id3v1 at the end", concat(mp3Frames(m1, 30), id3v1()), frames(m1, 30), 44100, 2},
		{"id3v2 and id3v1", concat(id3v2(100, false), mp3Frames(m25, 40), id3v1()), frames(m25, 40), 8000, 1},
		{"junk before the first frame", concat([]byte("\x00\x00\xff\xfb junk \xff"), mp3Frames(m1, 30)), frames(m1, 30), 44100, 2},
		{"zero padding after the tag", concat(id3v2(50, false), make([]byte, 3000), mp3Frames(m2, 30)), frames(m2, 30), 24000, 1},
		{"truncated last frame", mp3Frames(m1, 30)[:30*417-100], frames(m1, 29), 44100, 2},
		{"garbage mid-stream", concat(mp3Frames(m1, 20), []byte("\xff\xff\xff damaged \x00\x00"), mp3Frames(m1, 20)), frames(m1, 40), 44100, 2},
		{"apetag at the end", concat(mp3Frames(m1, 20), []byte("APETAGEX\xd0\x07\x00\x00"), make([]byte, 40)), frames(m1, 20), 44100, 2},
		// The Xing frame is silent and not counted in its own frame count.
		{"xing", concat(xingFrame(m1, "Xing", 1000, -1, false, 0, 0), mp3Frames(m1, 1000, 32, 320)), frames(m1, 1000), 44100, 2},
		{"xing mono", concat(xingFrame(m1mono, "Xing", 200, -1, false, 0, 0), mp3Frames(m1mono, 200)), frames(m1mono, 200), 32000, 1},
		{"xing mpeg2.5 mono", concat(xingFrame(m25, "Xing", 200, -1, false, 0, 0), mp3Frames(m25, 200)), frames(m25, 200), 8000, 1},
		{"info with lame delay", concat(xingFrame(m1, "Info", 100, 101*417, true, 576, 1000), mp3Frames(m1, 100)),
			samplesToDuration(100*1152-576-1000, 44100), 44100, 2},
		{"xing without frame count is scanned", concat(xingFrame(m1, "Xing", -1, -1, false, 0, 0), mp3Frames(m1, 77)), frames(m1, 77), 44100, 2},
		{"vbri", concat(vbriFrame(m1, 300, 301*417), mp3Frames(m1, 300)), frames(m1, 300), 44100, 2},
		// Naive concatenation: the first file's Xing frame count
		// covers only itself, so the frames are counted instead.
		{"concatenated files", concat(
			id3v2(100, false), xingFrame(m1, "Info", 50, 51*417, false, 0, 0), mp3Frames(m1, 50),
			id3v2(100, false), xingFrame(m1, "Info", 60, 61*417, false, 0, 0), mp3Frames(m1, 60)),
			frames(m1, 111), 44100, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info, err := probeBytes(t, c.b)
			if err != nil {
				t.Fatal(err)
			}
			if info.Format != formatMP3 || info.Duration != c.want || info.SampleRate != c.rate || info.Channels != c.ch {
				t.Errorf("got %+v, want %v %d Hz %d ch", info, c.want, c.rate, c.ch)
			}
		})
	}
}

func TestMP3Corrupt(t *testing.T) {
	m1 := mpegSpec{mpeg1, 128, 44100, false, false}
	cases := []struct {
		name, b, msg string
	}{
		{"one frame", string(m1.frame()), "only one frame"},
		{"one frame after a tag", string(concat(id3v2(10, false), m1.frame())), "only one frame"},
		{"tag cut off", string(id3v2(1000, false)[:500]), "ID3 tag says 1010 bytes but the file ends after 500"},
		{"tag header cut off", "ID3\x04\x00", "inside an ID3 tag header"},
		{"damaged tag header", "ID3\x09\x00\x00\x00\x00\x00\x10" + strings.Repeat("x", 100), "ID3 tag header at offset 0 is damaged"},
		{"tag and nothing", string(id3v2(100, false)), "no MPEG audio frames"},
		{"tag and text", string(concat(id3v2(100, false), []byte(strings.Repeat("hello ", 500)))), "no MPEG audio frames"},
		{"first frame not followed", string(concat(m1.frame(), make([]byte, 2000))), "not followed by another"},
		{"xing says more bytes than there are", string(concat(xingFrame(m1, "Xing", 1000, 1001*417, false, 0, 0), mp3Frames(m1, 500))),
			"the Xing header says the audio is 417417 bytes but the file ends 208917 bytes after it starts: truncated upload?"},
		{"xing says more frames than fit", string(concat(xingFrame(m1, "Xing", 100000, -1, false, 0, 0), mp3Frames(m1, 50))),
			"the Xing header says 100000 frames"},
		{"only the xing frame and one more", string(concat(xingFrame(m1, "Xing", -1, -1, false, 0, 0), m1.frame())), "only 1 complete audio frame"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info, err := probeBytes(t, []byte(c.b))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %+v, %v; want ErrCorrupt", info, err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("message %q does not mention %q", err, c.msg)
			}
		})
	}
}

// A header claiming an absurd frame count must not yield an absurd
// duration: it is checked against the bytes that could hold the frames.
func TestMP3HostileXing(t *testing.T) {
	m25 := mpegSpec{mpeg25, 8, 8000, true, false}
	b := concat(xingFrame(m25, "Xing", 0xffffffff, -1, false, 0, 0), mp3Frames(m25, 10))
	if _, err := probeBytes(t, b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v", err)
	}
}

// TestMP3RefusesWhatPrecedesTheFrames: an HTML page (or anything longer
// than one frame's tail) in front of real frames is not an MP3, whatever
// the file is called; a browser sniffing its first bytes would see a page.
func TestMP3RefusesWhatPrecedesTheFrames(t *testing.T) {
	m1 := mpegSpec{mpeg1, 128, 44100, false, false}
	page := []byte(`<html><meta http-equiv="refresh" content="0;url=https://evil.example/"></html>`)
	for name, b := range map[string][]byte{
		"short html page":         concat(page, mp3Frames(m1, 200)),
		"html page after a tag":   concat(id3v2(20, false), page, mp3Frames(m1, 200)),
		"two kilobytes of binary": concat(bytes.Repeat([]byte{0x01, 0x80, 0xfe, 0x33}, 512), mp3Frames(m1, 200)),
	} {
		if _, err := Probe(bytes.NewReader(b), int64(len(b))); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v, want ErrUnsupported", name, err)
		}
	}
}
