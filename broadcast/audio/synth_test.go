package audio

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"
)

// This file builds audio files byte by byte, so edge cases that no encoder
// produces on demand (damaged headers, odd chunks, hostile sizes) can be
// tested, and so benchmarks get big inputs without big fixtures.

// ---- WAV ----

type riffChunk struct {
	id   string
	body []byte
	size int64 // -1: len(body); anything else is written as is (lies allowed)
}

func chunk(id string, body []byte) riffChunk { return riffChunk{id: id, body: body, size: -1} }

func riffWAVE(chunks ...riffChunk) []byte {
	var b bytes.Buffer
	b.WriteString("RIFF\x00\x00\x00\x00WAVE")
	for _, c := range chunks {
		b.WriteString(c.id)
		n := c.size
		if n < 0 {
			n = int64(len(c.body))
		}
		binary.Write(&b, binary.LittleEndian, uint32(n))
		b.Write(c.body)
		if len(c.body)%2 == 1 {
			b.WriteByte(0)
		}
	}
	out := b.Bytes()
	binary.LittleEndian.PutUint32(out[4:], uint32(len(out)-8))
	return out
}

func fmtChunk(tag uint16, channels, rate, bits int) riffChunk {
	align := channels * bits / 8
	var b bytes.Buffer
	w := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	w(tag)
	w(uint16(channels))
	w(uint32(rate))
	w(uint32(rate * align))
	w(uint16(align))
	w(uint16(bits))
	if tag == wavExtensible {
		w(uint16(22))
		w(uint16(bits))
		w(uint32(0))
		sub := []byte{0, 0, 0, 0, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71}
		binary.LittleEndian.PutUint16(sub, wavPCM)
		b.Write(sub)
	}
	return chunk("fmt ", b.Bytes())
}

// wav builds a PCM WAV of the given length with a LIST chunk in front of
// the data, as ffmpeg and most editors write.
func wav(channels, rate, bits int, d float64) []byte {
	frames := int(d * float64(rate))
	return riffWAVE(
		fmtChunk(wavPCM, channels, rate, bits),
		chunk("LIST", []byte("INFOISFT\x05\x00\x00\x00loaxa\x00")),
		chunk("data", make([]byte, frames*channels*bits/8)),
	)
}

// ---- MP3 ----

type mpegSpec struct {
	version int // mpeg1, mpeg2, mpeg25
	bitrate int // kbit/s
	rate    int
	mono    bool
	pad     bool
}

func (m mpegSpec) header() []byte {
	bitrates := l3BitratesV2
	if m.version == mpeg1 {
		bitrates = l3BitratesV1
	}
	bri, sri := -1, -1
	for i, v := range bitrates {
		if v == m.bitrate && i != 0 {
			bri = i
		}
	}
	for i, v := range mpegRates[m.version] {
		if v == m.rate {
			sri = i
		}
	}
	if bri < 0 || sri < 0 {
		panic("bad mpegSpec")
	}
	h := []byte{0xff, 0xe0 | byte(m.version)<<3 | 1<<1 | 1, byte(bri)<<4 | byte(sri)<<2, 0}
	if m.pad {
		h[2] |= 2
	}
	if m.mono {
		h[3] = 3 << 6
	} else {
		h[3] = 1 << 6 // joint stereo
	}
	return h
}

func (m mpegSpec) frame() []byte {
	h, ok := parseMPEG(m.header())
	if !ok {
		panic("bad mpegSpec header")
	}
	f := make([]byte, h.frameLen)
	copy(f, m.header())
	// Frame bodies of 0x55 hold no 0xff, so nothing in them looks like
	// a sync; real audio data can, which the probe must survive anyway.
	for i := 4; i < len(f); i++ {
		f[i] = 0x55
	}
	return f
}

func (m mpegSpec) samples() int {
	if m.version == mpeg1 {
		return 1152
	}
	return 576
}

// mp3Frames concatenates n frames, cycling through the bitrates given (a
// VBR stream when there are several).
func mp3Frames(m mpegSpec, n int, bitrates ...int) []byte {
	if len(bitrates) == 0 {
		bitrates = []int{m.bitrate}
	}
	var b bytes.Buffer
	for i := range n {
		f := m
		f.bitrate = bitrates[i%len(bitrates)]
		b.Write(f.frame())
	}
	return b.Bytes()
}

// xingFrame is a first frame holding a Xing (or Info) header, optionally
// with a LAME tag carrying delay and padding.
func xingFrame(m mpegSpec, kind string, frames, nbytes int, lame bool, delay, padding int) []byte {
	f := m.frame()
	for i := 4; i < len(f); i++ {
		f[i] = 0
	}
	side := 17
	if m.version == mpeg1 && !m.mono {
		side = 32
	} else if m.version != mpeg1 && m.mono {
		side = 9
	}
	p := 4 + side
	copy(f[p:], kind)
	flags := uint32(0)
	q := p + 8
	if frames >= 0 {
		flags |= 1
		binary.BigEndian.PutUint32(f[q:], uint32(frames))
		q += 4
	}
	if nbytes >= 0 {
		flags |= 2
		binary.BigEndian.PutUint32(f[q:], uint32(nbytes))
		q += 4
	}
	binary.BigEndian.PutUint32(f[p+4:], flags)
	if lame {
		copy(f[q:], "LAME3.100")
		d := f[q+21:]
		d[0] = byte(delay >> 4)
		d[1] = byte(delay<<4) | byte(padding>>8)
		d[2] = byte(padding)
	}
	return f
}

func vbriFrame(m mpegSpec, frames, nbytes int) []byte {
	f := m.frame()
	for i := 4; i < len(f); i++ {
		f[i] = 0
	}
	v := f[36:]
	copy(v, "VBRI")
	binary.BigEndian.PutUint16(v[4:], 1)
	binary.BigEndian.PutUint32(v[10:], uint32(nbytes))
	binary.BigEndian.PutUint32(v[14:], uint32(frames))
	return f
}

// id3v2 builds a tag with a body of n bytes; footer sets the v2.4 footer
// flag and appends the footer.
func id3v2(n int, footer bool) []byte {
	h := []byte{'I', 'D', '3', 4, 0, 0, byte(n >> 21 & 0x7f), byte(n >> 14 & 0x7f), byte(n >> 7 & 0x7f), byte(n & 0x7f)}
	if footer {
		h[5] = 0x10
	}
	body := make([]byte, n)
	copy(body, "TIT2\x00\x00\x00\x06\x00\x00\x03Tin\x00")
	out := append(h, body...)
	if footer {
		f := append([]byte(nil), h...)
		copy(f, "3DI")
		out = append(out, f...)
	}
	return out
}

func id3v1() []byte {
	t := make([]byte, 128)
	copy(t, "TAGBan tin sang")
	return t
}

// ---- Ogg ----

func oggPageBytes(flags byte, granule int64, serial, seq uint32, packets ...[]byte) []byte {
	var lacing []byte
	var data []byte
	for _, p := range packets {
		n := len(p)
		for n >= 255 {
			lacing = append(lacing, 255)
			n -= 255
		}
		lacing = append(lacing, byte(n))
		data = append(data, p...)
	}
	if len(lacing) > 255 {
		panic("too many segments for one page")
	}
	h := make([]byte, 27, 27+len(lacing)+len(data))
	copy(h, "OggS")
	h[5] = flags
	binary.LittleEndian.PutUint64(h[6:], uint64(granule))
	binary.LittleEndian.PutUint32(h[14:], serial)
	binary.LittleEndian.PutUint32(h[18:], seq)
	h[26] = byte(len(lacing))
	page := append(append(h, lacing...), data...)
	binary.LittleEndian.PutUint32(page[22:], oggCRC(0, page))
	return page
}

func opusHead(channels int, preSkip int) []byte {
	h := make([]byte, 19)
	copy(h, "OpusHead")
	h[8] = 1
	h[9] = byte(channels)
	binary.LittleEndian.PutUint16(h[10:], uint16(preSkip))
	binary.LittleEndian.PutUint32(h[12:], 16000)
	return h
}

func opusTags() []byte {
	return append([]byte("OpusTags\x05\x00\x00\x00loaxa"), 0, 0, 0, 0)
}

// opusPacket20ms is a CELT-only 20 ms mono packet: TOC config 31, one frame.
var opusPacket20ms = []byte{31 << 3, 0x11, 0x22, 0x33}

// oggOpus builds a stream of d seconds of 20 ms packets, perPage packets a
// page, with the given pre-skip.
func oggOpus(d float64, preSkip, perPage int) []byte {
	const serial = 0x4c4f4158
	var b bytes.Buffer
	b.Write(oggPageBytes(oggBOS, 0, serial, 0, opusHead(1, preSkip)))
	b.Write(oggPageBytes(0, 0, serial, 1, opusTags()))
	packets := int(math.Ceil((d*opusRate + float64(preSkip)) / 960))
	seq := uint32(2)
	for done := 0; done < packets; {
		n := min(perPage, packets-done)
		ps := make([][]byte, n)
		for i := range ps {
			ps[i] = opusPacket20ms
		}
		done += n
		granule := int64(done * 960)
		flags := byte(0)
		if done == packets {
			flags = 0x04 // end of stream
			granule = int64(d*opusRate) + int64(preSkip)
		}
		b.Write(oggPageBytes(flags, granule, serial, seq, ps...))
		seq++
	}
	return b.Bytes()
}

// ---- WebM ----

func ebmlID(id uint32) []byte {
	switch {
	case id >= 1<<24:
		return []byte{byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
	case id >= 1<<16:
		return []byte{byte(id >> 16), byte(id >> 8), byte(id)}
	case id >= 1<<8:
		return []byte{byte(id >> 8), byte(id)}
	}
	return []byte{byte(id)}
}

func ebmlSize(n int) []byte {
	// Always 8 bytes, as MediaRecorder and ffmpeg often write.
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(n))
	b[0] = 0x01
	return b
}

func el(id uint32, body ...[]byte) []byte {
	payload := bytes.Join(body, nil)
	return append(append(ebmlID(id), ebmlSize(len(payload))...), payload...)
}

// elUnknown writes the "unknown size" marker MediaRecorder uses for the
// Segment and each Cluster of a live recording.
func elUnknown(id uint32, body ...[]byte) []byte {
	payload := bytes.Join(body, nil)
	return append(append(ebmlID(id), 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), payload...)
}

func elUint(id uint32, v uint64) []byte {
	b := binary.BigEndian.AppendUint64(nil, v)
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	return el(id, b)
}

func elFloat(id uint32, f float64) []byte {
	return el(id, binary.BigEndian.AppendUint64(nil, math.Float64bits(f)))
}

func elStr(id uint32, s string) []byte { return el(id, []byte(s)) }

func simpleBlock(track uint64, rel int16, packet []byte) []byte {
	b := []byte{0x80 | byte(track), byte(uint16(rel) >> 8), byte(rel), 0x80}
	return el(idSimpleBlock, b, packet)
}

func webmHeader(docType string) []byte {
	return el(idEBML,
		elUint(0x4286, 1), elUint(0x42F7, 1), elUint(0x42F2, 4), elUint(0x42F3, 8),
		elStr(idDocType, docType), elUint(0x4287, 4), elUint(0x4285, 2))
}

func webmTracks(codec string) []byte {
	return el(idTracks, el(idTrackEntry,
		elUint(idTrackNumber, 1), elUint(0x73C5, 12345), elUint(idTrackType, trackTypeAudio),
		elStr(idCodecID, codec),
		el(idAudio, elFloat(0xB5, 48000), elUint(idChannels, 1))))
}

type webmSpec struct {
	d           float64 // seconds of 20 ms blocks
	perCluster  int     // blocks per cluster
	unknownSize bool    // Segment and Clusters of unknown size, as MediaRecorder writes
	duration    float64 // Info/Duration in ms; 0 to leave it out
	codec       string
	docType     string
	packet      []byte // Opus packet in every block; a 20 ms one if nil
}

func webm(s webmSpec) []byte {
	if s.codec == "" {
		s.codec = "A_OPUS"
	}
	if s.docType == "" {
		s.docType = "webm"
	}
	if s.packet == nil {
		s.packet = opusPacket20ms
	}
	info := [][]byte{elUint(idTimecodeScale, 1000000), elStr(0x4D80, "loaxa-test"), elStr(0x5741, "loaxa-test")}
	if s.duration > 0 {
		info = append(info, elFloat(idDuration, s.duration))
	}
	body := [][]byte{el(idInfo, info...), webmTracks(s.codec)}
	blocks := int(math.Round(s.d * 50))
	for start := 0; start < blocks; start += s.perCluster {
		kids := [][]byte{elUint(idTimecode, uint64(start*20))}
		for i := start; i < min(start+s.perCluster, blocks); i++ {
			kids = append(kids, simpleBlock(1, int16((i-start)*20), s.packet))
		}
		if s.unknownSize {
			body = append(body, elUnknown(idCluster, kids...))
		} else {
			body = append(body, el(idCluster, kids...))
		}
	}
	seg := el(idSegment, body...)
	if s.unknownSize {
		seg = elUnknown(idSegment, body...)
	}
	return append(webmHeader(s.docType), seg...)
}

// ---- helpers ----

func probeBytes(t testing.TB, b []byte) (Info, error) {
	t.Helper()
	return Probe(bytes.NewReader(b), int64(len(b)))
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
