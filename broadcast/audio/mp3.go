package audio

import (
	"encoding/binary"
	"io"
)

const (
	mpeg1  = 3 // values of the header's two version bits
	mpeg2  = 2
	mpeg25 = 0
)

// mpegHeader is a decoded MPEG audio Layer III frame header.
type mpegHeader struct {
	version    int
	bitrate    int // kbit/s
	sampleRate int
	mono       bool
	crc        bool
	frameLen   int
	samples    int // per frame
}

var (
	l3BitratesV1 = [16]int{0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0}
	l3BitratesV2 = [16]int{0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0}
	mpegRates    = [4][3]int{
		mpeg25: {11025, 12000, 8000},
		mpeg2:  {22050, 24000, 16000},
		mpeg1:  {44100, 48000, 32000},
	}
)

// parseMPEG decodes a Layer III header. It rejects every reserved value
// (including free-format bitrate and reserved emphasis) because each one
// rejected makes a false sync in random data less likely.
func parseMPEG(b []byte) (mpegHeader, bool) {
	if len(b) < 4 || b[0] != 0xff || b[1]&0xe0 != 0xe0 {
		return mpegHeader{}, false
	}
	version := int(b[1]>>3) & 3
	layer := (b[1] >> 1) & 3
	bri := b[2] >> 4
	sri := (b[2] >> 2) & 3
	if version == 1 || layer != 1 || bri == 0 || bri == 15 || sri == 3 || b[3]&3 == 2 {
		return mpegHeader{}, false
	}
	h := mpegHeader{
		version:    version,
		sampleRate: mpegRates[version][sri],
		mono:       b[3]>>6 == 3,
		crc:        b[1]&1 == 0,
	}
	pad := int(b[2]>>1) & 1
	if version == mpeg1 {
		h.bitrate = l3BitratesV1[bri]
		h.samples = 1152
		h.frameLen = 144000*h.bitrate/h.sampleRate + pad
	} else {
		h.bitrate = l3BitratesV2[bri]
		h.samples = 576
		h.frameLen = 72000*h.bitrate/h.sampleRate + pad
	}
	return h, true
}

// sameStream tells whether two headers can belong to one stream. The
// channel mode may flip between stereo and joint stereo frame to frame
// (LAME does this), so only mono-ness is compared.
func (h mpegHeader) sameStream(o mpegHeader) bool {
	return h.version == o.version && h.sampleRate == o.sampleRate && h.mono == o.mono
}

// maxFrameLen is the largest frame this stream's sample rate allows: the
// slack given to a header's byte count for a cut-off last frame.
func (h mpegHeader) maxFrameLen() int64 {
	if h.version == mpeg1 {
		return int64(144000*l3BitratesV1[14]/h.sampleRate + 1)
	}
	return int64(72000*l3BitratesV2[14]/h.sampleRate + 1)
}

// minFrameLen is the smallest frame this stream's sample rate allows (the
// lowest bitrate, unpadded), used to check a frame count claimed by a header
// against the bytes present.
func (h mpegHeader) minFrameLen() int {
	if h.version == mpeg1 {
		return 144000 * l3BitratesV1[1] / h.sampleRate
	}
	return 72000 * l3BitratesV2[1] / h.sampleRate
}

const (
	// syncSearch bounds how far into the file (after any ID3 tag) we look
	// for the first frame, so random data is rejected quickly.
	syncSearch = 256 << 10
	// resyncSearch bounds the hunt for the next frame after damage in the
	// middle of a stream.
	resyncSearch = 64 << 10
	// maxFrameLen is the largest Layer III frame (MPEG-1, 320 kbit/s,
	// 32 kHz, padded).
	maxFrameLen = 1441
)

type mp3Prober struct {
	size int64
	hdr  *source // frame headers, one small read each
	scan *source // byte-wise hunting for a sync, large reads
	aux  *source // reads that must not disturb scan's buffer
}

func probeMP3(r io.ReaderAt, size int64) (Info, error) {
	p := &mp3Prober{
		size: size,
		hdr:  newSource(r, size, 4),
		scan: newSource(r, size, 16<<10),
		aux:  newSource(r, size, 4),
	}
	start, tagged, err := p.skipID3(0)
	if err != nil {
		return Info{}, err
	}
	if tagged {
		// Other codecs sometimes carry ID3 tags too; name them rather
		// than calling the file a damaged MP3.
		b, err := p.aux.at(start, 16)
		if err != nil {
			return Info{}, err
		}
		if name := sniffOther(b); name != "" {
			return Info{}, unsupportedf("audio: this is %s behind an ID3 tag, not a format we take; %s", name, weTake)
		}
	}
	first, h, err := p.firstFrame(start, tagged)
	if err != nil {
		return Info{}, err
	}
	if err := p.checkLead(start, first); err != nil {
		return Info{}, err
	}
	info := Info{
		Format:     formatMP3,
		MIME:       "audio/mpeg",
		SampleRate: h.sampleRate,
		Channels:   2,
	}
	if h.mono {
		info.Channels = 1
	}

	x, err := p.vbrHeader(first, h)
	if err != nil {
		return Info{}, err
	}
	if x.frames > 0 {
		slack := h.maxFrameLen()
		if x.bytes > 0 && first+x.bytes > p.size {
			// Short of what the header says: fine if only the last
			// frame is cut, which takes counting the frames to tell.
			truncated := first+x.bytes > p.size+slack
			if !truncated {
				n, _, err := p.count(first+int64(h.frameLen), h)
				if err != nil {
					return Info{}, err
				}
				truncated = n+1 < x.frames
			}
			if truncated {
				return Info{}, corruptf("mp3: the %s header says the audio is %d bytes but the file ends %d bytes after it starts: truncated upload?", x.kind, x.bytes, p.size-first)
			}
		}
		minLen := h.minFrameLen()
		if have := p.size - first - int64(h.frameLen); x.frames*int64(minLen) > have+slack {
			return Info{}, corruptf("mp3: the %s header says %d frames, which need at least %d bytes, but the file has only %d after it: truncated upload?", x.kind, x.frames, x.frames*int64(minLen), max(have, 0))
		}
		if !p.continuesPast(first, x) {
			samples := x.frames * int64(h.samples)
			if x.delay > 0 && samples > x.delay {
				samples -= x.delay
			}
			info.Duration = samplesToDuration(samples, int64(h.sampleRate))
			return info, nil
		}
		// The header describes only the start of the file: several MP3s
		// were concatenated. Count them all.
	}

	from := first
	if x.kind != "" {
		from += int64(h.frameLen) // the Xing/VBRI frame is silent
	}
	frames, samples, err := p.count(from, h)
	if err != nil {
		return Info{}, err
	}
	if frames < 2 {
		return Info{}, corruptf("mp3: only %d complete audio frame(s) before the file ends at %d bytes: truncated upload?", frames, p.size)
	}
	info.Duration = samplesToDuration(samples, int64(h.sampleRate))
	return info, nil
}

// maxLead is the most that may come before the first frame (after any ID3
// tag and zero padding): the tail of one frame, as in a file cut from a
// stream. More is something else wearing an .mp3 name.
const maxLead = maxFrameLen

// checkLead refuses a file whose first frame is not near its start, or is
// preceded by text. Browsers sniff a file's first bytes, so an HTML page
// followed by MP3 frames would be stored as audio and, served without care,
// run as a page on the console's origin.
func (p *mp3Prober) checkLead(start, first int64) error {
	if first == start {
		return nil
	}
	if first-start > syncSearch {
		return unsupportedf("audio: the first MP3 frame is %d bytes into the file: not an MP3 file; %s", first-start, weTake)
	}
	lead, err := p.aux.at(start, int(first-start))
	if err != nil {
		return err
	}
	i := 0
	for i < len(lead) && lead[i] == 0 {
		i++
	}
	lead = lead[i:]
	if len(lead) > maxLead {
		return unsupportedf("audio: %d bytes that are not audio come before the first MP3 frame (at byte %d): not an MP3 file; %s", len(lead), first, weTake)
	}
	if looksLikeText(lead) {
		return unsupportedf("audio: the file starts with %d bytes of text (a web page or a document?) before the first MP3 frame; %s", len(lead), weTake)
	}
	return nil
}

// looksLikeText reports whether b, at least 8 bytes, is nearly all printable
// ASCII or white space: the tail of a compressed frame is about a third so.
func looksLikeText(b []byte) bool {
	if len(b) < 8 {
		return false
	}
	text := 0
	for _, c := range b {
		if c >= 0x20 && c < 0x7f || c == '\t' || c == '\n' || c == '\r' {
			text++
		}
	}
	return text*10 >= len(b)*9
}

// skipID3 steps over ID3v2 tags at off. Some taggers write more than one,
// so it loops; each tag is at least 10 bytes, so the loop ends.
func (p *mp3Prober) skipID3(off int64) (int64, bool, error) {
	tagged := false
	for {
		b, err := p.aux.at(off, 10)
		if err != nil {
			return 0, false, err
		}
		if !hasPrefix(b, "ID3") {
			return off, tagged, nil
		}
		if len(b) < 10 {
			return 0, false, corruptf("mp3: the file ends after %d bytes, inside an ID3 tag header: truncated upload?", p.size)
		}
		n, ok := id3Len(b)
		if !ok {
			if tagged {
				return off, tagged, nil
			}
			return 0, false, corruptf("mp3: the ID3 tag header at offset %d is damaged (version 2.%d.%d, size bytes % x)", off, b[3], b[4], b[6:10])
		}
		if off+n > p.size {
			return 0, false, corruptf("mp3: ID3 tag says %d bytes but the file ends after %d: truncated upload?", n, p.size-off)
		}
		off += n
		tagged = true
	}
}

// id3Len returns the length of the ID3v2 tag whose 10-byte header is b,
// footer included.
func id3Len(b []byte) (int64, bool) {
	if len(b) < 10 || !hasPrefix(b, "ID3") || b[3] < 2 || b[3] > 4 || b[4] == 0xff || b[6]|b[7]|b[8]|b[9] >= 0x80 {
		return 0, false
	}
	// The size is "syncsafe": 7 bits per byte, so it never looks like a
	// frame sync.
	n := int64(b[6])<<21 | int64(b[7])<<14 | int64(b[8])<<7 | int64(b[9])
	n += 10
	if b[5]&0x10 != 0 { // ID3v2.4 footer
		n += 10
	}
	return n, true
}

// chain counts consecutive frames of one stream from a header at pos, up to
// want. eof reports that the count stopped because the file ended (the last
// counted frame may be cut short) rather than at a non-frame.
func (p *mp3Prober) chain(pos int64, h mpegHeader, want int) (n int, eof bool, err error) {
	n = 1
	for n < want {
		pos += int64(h.frameLen)
		b, err := p.aux.at(pos, 4)
		if err != nil {
			return 0, false, err
		}
		if len(b) < 4 {
			return n, true, nil
		}
		next, ok := parseMPEG(b)
		if !ok || !next.sameStream(h) {
			return n, false, nil
		}
		h = next
		n++
	}
	return n, false, nil
}

// firstFrame finds the first frame that the next one confirms, so that a
// stray 0xFFE in a tag or junk is not taken for audio.
func (p *mp3Prober) firstFrame(start int64, tagged bool) (int64, mpegHeader, error) {
	b, err := p.hdr.at(start, 4)
	if err != nil {
		return 0, mpegHeader{}, err
	}
	h0, atStart := parseMPEG(b)
	if atStart {
		n, eof, err := p.chain(start, h0, 2)
		if err != nil {
			return 0, mpegHeader{}, err
		}
		if n >= 2 {
			return start, h0, nil
		}
		if eof {
			return 0, mpegHeader{}, corruptf("mp3: only one frame before the file ends at %d bytes: truncated upload?", p.size)
		}
	}
	pos, h, found, err := p.hunt(start+1, syncSearch, nil)
	if err != nil {
		return 0, mpegHeader{}, err
	}
	if found {
		return pos, h, nil
	}
	switch {
	case atStart:
		return 0, mpegHeader{}, corruptf("mp3: the first frame at offset %d is not followed by another where its length says: damaged file?", start)
	case tagged:
		return 0, mpegHeader{}, corruptf("mp3: an ID3 tag but no MPEG audio frames in the %d bytes after it", min(p.size-start, syncSearch))
	}
	return 0, mpegHeader{}, unsupportedf("audio: not a recognised audio format; %s", weTake)
}

// hunt looks byte by byte, from pos for at most limit bytes, for a frame
// header confirmed by the two after it (or by one, when the file ends
// there). With like set, only frames of that stream count.
func (p *mp3Prober) hunt(pos, limit int64, like *mpegHeader) (int64, mpegHeader, bool, error) {
	end := min(p.size-3, pos+limit)
	for pos < end {
		w, err := p.scan.at(pos, int(min(end+3-pos, 16<<10)))
		if err != nil {
			return 0, mpegHeader{}, false, err
		}
		if len(w) < 4 {
			break
		}
		// Each window overlaps the next by 3 bytes so a header that
		// straddles them is still seen.
		for i := 0; i+4 <= len(w); i++ {
			if w[i] != 0xff {
				continue
			}
			h, ok := parseMPEG(w[i : i+4])
			if !ok || (like != nil && !like.sameStream(h)) {
				continue
			}
			n, eof, err := p.chain(pos+int64(i), h, 3)
			if err != nil {
				return 0, mpegHeader{}, false, err
			}
			if n == 3 || (n == 2 && eof) {
				return pos + int64(i), h, true, nil
			}
		}
		pos += int64(len(w) - 3)
	}
	return 0, mpegHeader{}, false, nil
}

// vbrInfo is what a Xing/Info or VBRI header in the first frame tells.
type vbrInfo struct {
	kind   string // "Xing", "Info", "VBRI", or "" when absent
	frames int64  // audio frames, excluding the header's own frame
	bytes  int64  // stream bytes including the header's frame, 0 if not given
	delay  int64  // encoder delay + padding in samples, from a LAME tag
}

func (p *mp3Prober) vbrHeader(first int64, h mpegHeader) (vbrInfo, error) {
	f, err := p.aux.at(first, h.frameLen)
	if err != nil {
		return vbrInfo{}, err
	}
	side := 17
	switch {
	case h.version == mpeg1 && h.mono:
		side = 17
	case h.version == mpeg1:
		side = 32
	case h.mono:
		side = 9
	}
	// Encoders disagree on whether a CRC shifts the Xing header, so look
	// in both places.
	for _, off := range []int{4 + side, 6 + side} {
		if off == 6+side && !h.crc {
			break
		}
		if off+8 > len(f) {
			break
		}
		kind := string(f[off : off+4])
		if kind != "Xing" && kind != "Info" {
			continue
		}
		x := vbrInfo{kind: kind}
		flags := binary.BigEndian.Uint32(f[off+4:])
		q := off + 8
		field := func() (int64, bool) {
			if q+4 > len(f) {
				return 0, false
			}
			v := int64(binary.BigEndian.Uint32(f[q:]))
			q += 4
			return v, true
		}
		if flags&1 != 0 {
			v, ok := field()
			if !ok {
				return vbrInfo{}, nil
			}
			x.frames = v
		}
		if flags&2 != 0 {
			v, ok := field()
			if !ok {
				return vbrInfo{}, nil
			}
			x.bytes = v
		}
		if flags&4 != 0 {
			q += 100 // seek table
		}
		if flags&8 != 0 {
			q += 4 // quality
		}
		// A LAME tag (written by LAME and by ffmpeg) records the
		// encoder delay and end padding, which players skip.
		if q+24 <= len(f) && isAlnum(f[q:q+4]) {
			d := f[q+21:]
			delay := int64(d[0])<<4 | int64(d[1]>>4)
			padding := int64(d[1]&0xf)<<8 | int64(d[2])
			x.delay = delay + padding
		}
		return x, nil
	}
	if v := 4 + 32; v+18 <= len(f) && string(f[v:v+4]) == "VBRI" {
		return vbrInfo{
			kind:   "VBRI",
			bytes:  int64(binary.BigEndian.Uint32(f[v+10:])),
			frames: int64(binary.BigEndian.Uint32(f[v+14:])),
		}, nil
	}
	return vbrInfo{}, nil
}

func isAlnum(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// continuesPast tells whether MPEG audio follows the end of the stream the
// header describes (naive `cat a.mp3 b.mp3` concatenation), in which case
// its frame count covers only the first part.
func (p *mp3Prober) continuesPast(first int64, x vbrInfo) bool {
	if x.bytes == 0 {
		return false
	}
	end := first + x.bytes
	// Trailing ID3v1 (128 bytes) and APE/Lyrics tags are normal; only
	// look further when there is room for real audio.
	if p.size-end < 4<<10 {
		return false
	}
	b, err := p.aux.at(end, 4)
	if err != nil || len(b) < 4 {
		return false
	}
	if hasPrefix(b, "ID3") {
		return true
	}
	_, ok := parseMPEG(b)
	return ok
}

// count sums the samples of consecutive frames from pos to the end of the
// file, stepping over embedded ID3v2 tags and hunting past damage. Every
// step moves pos forward, so it ends; it reads only the 4-byte headers.
func (p *mp3Prober) count(pos int64, like mpegHeader) (frames, samples int64, err error) {
	for pos+4 <= p.size {
		b, err := p.hdr.at(pos, 4)
		if err != nil {
			return 0, 0, err
		}
		if h, ok := parseMPEG(b); ok && h.sameStream(like) {
			if pos+int64(h.frameLen) > p.size {
				break // a cut-off last frame: tolerated, not counted
			}
			frames++
			samples += int64(h.samples)
			pos += int64(h.frameLen)
			continue
		}
		switch {
		case hasPrefix(b, "TAG") && p.size-pos <= 128+maxFrameLen,
			hasPrefix(b, "APET"), hasPrefix(b, "LYRI"):
			return frames, samples, nil // trailing tags
		case hasPrefix(b, "ID3"):
			// A second file's tag, from concatenation.
			t, err := p.aux.at(pos, 10)
			if err != nil {
				return 0, 0, err
			}
			if n, ok := id3Len(t); ok {
				pos += n
				continue
			}
		}
		next, _, found, err := p.hunt(pos+1, resyncSearch, &like)
		if err != nil {
			return 0, 0, err
		}
		if !found {
			break
		}
		pos = next
	}
	return frames, samples, nil
}
