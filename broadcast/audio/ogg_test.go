package audio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
	"time"
)

// The Ogg CRC of "OggS" pages is checked against an independent bitwise
// implementation, since a wrong table would make every real file "corrupt".
func TestOggCRC(t *testing.T) {
	slow := func(b []byte) uint32 {
		var crc uint32
		for _, c := range b {
			crc ^= uint32(c) << 24
			for range 8 {
				if crc&0x80000000 != 0 {
					crc = crc<<1 ^ 0x04c11db7
				} else {
					crc <<= 1
				}
			}
		}
		return crc
	}
	for _, s := range []string{"", "a", "OggS", strings.Repeat("loaxa", 1000)} {
		if got, want := oggCRC(0, []byte(s)), slow([]byte(s)); got != want {
			t.Errorf("oggCRC(%.10q) = %08x, want %08x", s, got, want)
		}
	}
	// Not the reflected IEEE CRC that hash/crc32 computes.
	if oggCRC(0, []byte("OggS")) == crc32.ChecksumIEEE([]byte("OggS")) {
		t.Error("oggCRC matches IEEE CRC-32")
	}
}

func TestOgg(t *testing.T) {
	const serial = 0x4c4f4158
	cases := []struct {
		name string
		b    []byte
		want time.Duration
	}{
		{"one second", oggOpus(1, 312, 50), time.Second},
		{"many small pages", oggOpus(2.5, 3840, 1), 2500 * time.Millisecond},
		{"truncated last page uses the one before", func() []byte {
			b := oggOpus(1, 0, 10) // 50 packets, pages of 10: last complete page ends at 40 packets
			return b[:len(b)-10]
		}(), 800 * time.Millisecond},
		{"damaged last page uses the one before", func() []byte {
			b := oggOpus(1, 0, 10)
			b[len(b)-1] ^= 0xff
			return b
		}(), 800 * time.Millisecond},
		{"garbage appended", concat(oggOpus(1, 312, 50), bytes.Repeat([]byte("OggS junk "), 100)), time.Second},
		// Pages of another stream (say, a cover image track) at the end
		// are not this stream's length.
		{"other stream last", concat(oggOpus(1, 312, 50), oggPageBytes(0, 1<<40, serial+1, 9, []byte("x"))), time.Second},
		{"continued tags page", func() []byte {
			var b bytes.Buffer
			b.Write(oggPageBytes(oggBOS, 0, serial, 0, opusHead(2, 0)))
			tags := append(opusTags(), make([]byte, 300)...)
			// A 300-byte packet split over two pages: the first ends in a
			// 255 lacing value and carries granule -1.
			p1 := oggPageBytes(0, -1, serial, 1, tags[:255])
			p1 = fixLacing(p1, []byte{255})
			b.Write(p1)
			b.Write(oggPageBytes(oggContinued, 0, serial, 2, tags[255:]))
			b.Write(oggPageBytes(0, 48000, serial, 3, opusPacket20ms))
			return b.Bytes()
		}(), time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info, err := probeBytes(t, c.b)
			if err != nil {
				t.Fatal(err)
			}
			if info.Format != formatOgg || info.MIME != "audio/ogg" || info.Duration != c.want || info.SampleRate != 48000 {
				t.Errorf("got %+v, want %v", info, c.want)
			}
		})
	}
}

// fixLacing rewrites a one-segment page's lacing table (for a packet that
// continues on the next page) and its CRC.
func fixLacing(page, lacing []byte) []byte {
	page[26+1] = lacing[0]
	binary.LittleEndian.PutUint32(page[22:], 0)
	binary.LittleEndian.PutUint32(page[22:], oggCRC(0, page))
	return page
}

func TestOggCorrupt(t *testing.T) {
	const serial = 0x4c4f4158
	head := oggPageBytes(oggBOS, 0, serial, 0, opusHead(1, 312))
	tags := oggPageBytes(0, 0, serial, 1, opusTags())
	cases := []struct {
		name, msg string
		b         []byte
	}{
		{"headers only", "no complete audio page", concat(head, tags)},
		{"head only", "before the OpusTags header", head},
		{"head cut", "inside the OpusHead page", head[:len(head)-3]},
		{"page header cut", "first page header is damaged or cut short", head[:20]},
		{"bad crc on head", "fails its CRC check", func() []byte {
			b := concat(head, tags)
			b[45] ^= 1 // inside OpusHead
			return b
		}()},
		{"not bos", "does not start a stream", oggPageBytes(0, 0, serial, 0, opusHead(1, 0))},
		{"tags missing", "not OpusTags", concat(head, oggPageBytes(0, 960, serial, 1, opusPacket20ms))},
		{"zero channels", "0 channels", concat(oggPageBytes(oggBOS, 0, serial, 0, opusHead(0, 0)), tags)},
		{"short head", "must be at least 19", oggPageBytes(oggBOS, 0, serial, 0, []byte("OpusHead\x01\x01"))},
		{"all pre-skip", "inside the 312-sample pre-skip", concat(head, tags, oggPageBytes(0, 300, serial, 2, opusPacket20ms))},
		{"hostile granule", "damaged granule position", concat(head, tags, oggPageBytes(0, 1<<62, serial, 2, opusPacket20ms))},
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

// A tail stuffed with plausible page headers that fail their CRC must not
// make the backward search read the file over and over; it falls back to
// walking the pages forward.
func TestOggManyFalsePages(t *testing.T) {
	const serial = 0x4c4f4158
	good := oggOpus(3, 312, 10)
	fake := oggPageBytes(0, 1<<20, serial, 99, bytes.Repeat([]byte{0x42}, 200))
	fake[22] ^= 0xff // break its CRC
	var tail []byte
	for range 500 {
		tail = append(tail, fake...)
	}
	b := concat(good, tail)
	cr := &countingReader{r: bytes.NewReader(b)}
	info, err := Probe(cr, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if info.Duration != 3*time.Second {
		t.Errorf("duration %v, want 3s", info.Duration)
	}
	if cr.n > 4*int64(len(b)) {
		t.Errorf("read %d bytes of a %d-byte file", cr.n, len(b))
	}
}
