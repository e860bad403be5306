package audio

import (
	"encoding/binary"
	"io"
	"sync"
)

const (
	oggHeaderLen  = 27
	oggMaxPage    = oggHeaderLen + 255 + 255*255
	oggBOS        = 0x02
	oggContinued  = 0x01
	opusRate      = 48000
	oggTailWindow = 64 << 10
	// oggMaxCRCChecks bounds the backward search: each candidate costs a
	// page read, and a hostile file can plant "OggS" every few bytes.
	oggMaxCRCChecks = 32
)

// oggCRCTable is built on first use: the Ogg CRC is the unreflected CRC-32
// with polynomial 0x04c11db7 and zero initial value, which hash/crc32
// (reflected only) cannot compute.
var oggCRCTable = sync.OnceValue(func() *[256]uint32 {
	var t [256]uint32
	for i := range t {
		r := uint32(i) << 24
		for range 8 {
			if r&0x80000000 != 0 {
				r = r<<1 ^ 0x04c11db7
			} else {
				r <<= 1
			}
		}
		t[i] = r
	}
	return &t
})

func oggCRC(crc uint32, b []byte) uint32 {
	t := oggCRCTable()
	for _, c := range b {
		crc = crc<<8 ^ t[byte(crc>>24)^c]
	}
	return crc
}

type oggPage struct {
	off      int64
	flags    byte
	granule  int64
	serial   uint32
	crc      uint32
	segs     [255]byte
	nsegs    int
	len      int  // header + segment table + data
	complete bool // the whole page is inside the file
}

type oggProber struct {
	size int64
	src  *source // pages, read whole for CRC checks
	walk *source // large sequential and backward reads
}

func probeOgg(r io.ReaderAt, size int64) (Info, error) {
	o := &oggProber{
		size: size,
		src:  newSource(r, size, 512),
		walk: newSource(r, size, oggTailWindow),
	}

	// Beginning-of-stream pages come first, one per multiplexed stream.
	var (
		head      oggPage
		found     bool
		firstName string
		pos       int64
	)
	for i := 0; i < 16 && pos < size; i++ {
		pg, ok, err := o.page(pos)
		if err != nil {
			return Info{}, err
		}
		if !ok {
			if i == 0 {
				return Info{}, corruptf("ogg: the first page header is damaged or cut short (the file is %d bytes)", size)
			}
			break
		}
		if pg.flags&oggBOS == 0 {
			if i == 0 {
				return Info{}, corruptf("ogg: the first page does not start a stream")
			}
			break
		}
		// The codec is identified before the page is checked, so that a
		// cut-off Vorbis file is still called Vorbis.
		pkt, err := o.src.at(pos+int64(oggHeaderLen+pg.nsegs), 19)
		if err != nil {
			return Info{}, err
		}
		name := oggCodec(pkt)
		if firstName == "" {
			firstName = name
		}
		if name == "Opus" && !found {
			if !pg.complete {
				return Info{}, corruptf("ogg: the file ends after %d bytes, inside the OpusHead page: truncated upload?", size)
			}
			if err := o.checkCRC(pg); err != nil {
				return Info{}, err
			}
			head, found = pg, true
		}
		if !pg.complete {
			break
		}
		pos += int64(pg.len)
	}
	if !found {
		if firstName != "" && firstName != "Opus" {
			return Info{}, unsupportedf("audio: this is Ogg %s; only Opus is taken in Ogg; %s", firstName, weTake)
		}
		return Info{}, corruptf("ogg: no Opus stream header in the first pages")
	}

	pktLen := 0
	for _, n := range head.segs[:head.nsegs] {
		pktLen += int(n)
		if n < 255 {
			break
		}
	}
	h, err := o.src.at(head.off+int64(oggHeaderLen+head.nsegs), 19)
	if err != nil {
		return Info{}, err
	}
	if pktLen < 19 || len(h) < 19 {
		return Info{}, corruptf("ogg: the OpusHead packet is %d bytes; it must be at least 19", pktLen)
	}
	if h[8]>>4 != 0 {
		return Info{}, unsupportedf("audio: Ogg Opus header version %d.%d is not one we can read; %s", h[8]>>4, h[8]&0xf, weTake)
	}
	channels := int(h[9])
	preSkip := int64(binary.LittleEndian.Uint16(h[10:12]))
	if channels == 0 {
		return Info{}, corruptf("ogg: the OpusHead says 0 channels")
	}

	tags, err := o.tagsPage(pos, head.serial)
	if err != nil {
		return Info{}, err
	}

	granule, ok, err := o.lastGranule(tags, head.serial)
	if err != nil {
		return Info{}, err
	}
	if !ok || granule <= 0 {
		return Info{}, corruptf("ogg: no complete audio page after the Opus headers (the file is %d bytes): truncated upload?", size)
	}
	if granule <= preSkip {
		return Info{}, corruptf("ogg: the last page ends at sample %d, inside the %d-sample pre-skip: no audio", granule, preSkip)
	}
	d := samplesToDuration(granule-preSkip, opusRate)
	if d > maxPlausible(size) {
		return Info{}, corruptf("ogg: the last page claims %v of audio from only %d bytes: damaged granule position", d, size)
	}
	return Info{
		Format:     formatOgg,
		MIME:       "audio/ogg",
		Duration:   d,
		SampleRate: opusRate,
		Channels:   channels,
	}, nil
}

func oggCodec(pkt []byte) string {
	switch {
	case hasPrefix(pkt, "OpusHead"):
		return "Opus"
	case hasPrefix(pkt, "\x01vorbis"):
		return "Vorbis"
	case hasPrefix(pkt, "\x7fFLAC"):
		return "FLAC"
	case hasPrefix(pkt, "Speex   "):
		return "Speex"
	case hasPrefix(pkt, "\x80theora"):
		return "Theora video"
	case hasPrefix(pkt, "fishead"):
		return "Skeleton"
	}
	return ""
}

// page decodes the page header at off. ok is false when there is no page
// header there (wrong capture pattern or version, or cut short).
func (o *oggProber) page(off int64) (oggPage, bool, error) {
	return o.pageFrom(o.src, off)
}

func (o *oggProber) pageFrom(s *source, off int64) (oggPage, bool, error) {
	b, err := s.at(off, oggHeaderLen+255)
	if err != nil {
		return oggPage{}, false, err
	}
	if len(b) < oggHeaderLen || !hasPrefix(b, "OggS") || b[4] != 0 {
		return oggPage{}, false, nil
	}
	pg := oggPage{
		off:     off,
		flags:   b[5],
		granule: int64(binary.LittleEndian.Uint64(b[6:14])),
		serial:  binary.LittleEndian.Uint32(b[14:18]),
		crc:     binary.LittleEndian.Uint32(b[22:26]),
		nsegs:   int(b[26]),
	}
	if len(b) < oggHeaderLen+pg.nsegs {
		return oggPage{}, false, nil
	}
	copy(pg.segs[:], b[oggHeaderLen:oggHeaderLen+pg.nsegs])
	pg.len = oggHeaderLen + pg.nsegs
	for _, n := range pg.segs[:pg.nsegs] {
		pg.len += int(n)
	}
	pg.complete = off+int64(pg.len) <= o.size
	return pg, true, nil
}

func (o *oggProber) crcOK(pg oggPage) (bool, error) {
	b, err := o.src.at(pg.off, pg.len)
	if err != nil {
		return false, err
	}
	if len(b) < pg.len {
		return false, nil
	}
	var zero [4]byte
	c := oggCRC(0, b[:22])
	c = oggCRC(c, zero[:])
	c = oggCRC(c, b[26:])
	return c == pg.crc, nil
}

func (o *oggProber) checkCRC(pg oggPage) error {
	ok, err := o.crcOK(pg)
	if err != nil {
		return err
	}
	if !ok {
		return corruptf("ogg: the page at offset %d fails its CRC check: damaged file", pg.off)
	}
	return nil
}

// tagsPage finds the OpusTags page, the stream's second, and returns its
// offset: audio can only come after it.
func (o *oggProber) tagsPage(pos int64, serial uint32) (int64, error) {
	// Other multiplexed streams' headers may come in between; 64 pages
	// is far more than any real file has.
	for range 64 {
		pg, ok, err := o.page(pos)
		if err != nil {
			return 0, err
		}
		if !ok || !pg.complete {
			return 0, corruptf("ogg: the file ends or is damaged at offset %d, before the OpusTags header: truncated upload?", pos)
		}
		if pg.serial == serial {
			if err := o.checkCRC(pg); err != nil {
				return 0, err
			}
			b, err := o.src.at(pos+int64(oggHeaderLen+pg.nsegs), 8)
			if err != nil {
				return 0, err
			}
			if pg.flags&oggContinued != 0 || !hasPrefix(b, "OpusTags") {
				return 0, corruptf("ogg: the second Opus packet is not OpusTags: damaged file")
			}
			return pos, nil
		}
		pos += int64(pg.len)
	}
	return 0, corruptf("ogg: no OpusTags header in the first 64 pages")
}

// lastGranule finds the granule position of the last complete, CRC-valid
// page of the stream at or after floor, searching backwards from the end of
// the file, so a programme of any length costs a few reads; a page cut off
// by a truncated upload is skipped.
func (o *oggProber) lastGranule(floor int64, serial uint32) (int64, bool, error) {
	checks := 0
	end := o.size
	for end-floor >= oggHeaderLen {
		start := max(floor, end-oggTailWindow)
		w, err := o.walk.at(start, int(end-start))
		if err != nil {
			return 0, false, err
		}
		for i := len(w) - 4; i >= 0; i-- {
			if w[i] != 'O' || string(w[i:i+4]) != "OggS" {
				continue
			}
			pg, ok, err := o.page(start + int64(i))
			if err != nil {
				return 0, false, err
			}
			// Pages on which no packet ends carry granule -1.
			if !ok || !pg.complete || pg.serial != serial || pg.granule == -1 {
				continue
			}
			if checks++; checks > oggMaxCRCChecks {
				return o.lastGranuleForward(floor, serial)
			}
			good, err := o.crcOK(pg)
			if err != nil {
				return 0, false, err
			}
			if good {
				return pg.granule, true, nil
			}
		}
		if start == floor {
			break
		}
		// Overlap by 3 bytes so a capture pattern straddling the
		// windows is seen once.
		end = start + 3
	}
	return 0, false, nil
}

// lastGranuleForward walks the pages from floor one after the other; it is
// the fallback when the tail is full of false capture patterns. It stops at
// the first gap or cut-off page, as a player would, and skips pages that
// fail their CRC.
func (o *oggProber) lastGranuleForward(floor int64, serial uint32) (int64, bool, error) {
	var granule int64
	found := false
	// Each page is at least 27 bytes, so this ends.
	for pos := floor; pos < o.size; {
		pg, ok, err := o.pageFrom(o.walk, pos)
		if err != nil {
			return 0, false, err
		}
		if !ok || !pg.complete {
			break
		}
		if pg.serial == serial && pg.granule != -1 {
			good, err := o.crcOK(pg)
			if err != nil {
				return 0, false, err
			}
			if good {
				granule, found = pg.granule, true
			}
		}
		pos += int64(pg.len)
	}
	return granule, found, nil
}
