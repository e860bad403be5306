package audio

import (
	"encoding/binary"
	"io"
	"math"
	"time"
)

// Matroska/WebM element IDs, with their length-marker bits, as written.
const (
	idEBML          = 0x1A45DFA3
	idDocType       = 0x4282
	idSegment       = 0x18538067
	idSeekHead      = 0x114D9B74
	idInfo          = 0x1549A966
	idTimecodeScale = 0x2AD7B1
	idDuration      = 0x4489
	idTracks        = 0x1654AE6B
	idTrackEntry    = 0xAE
	idTrackNumber   = 0xD7
	idTrackType     = 0x83
	idCodecID       = 0x86
	idAudio         = 0xE1
	idChannels      = 0x9F
	idCluster       = 0x1F43B675
	idTimecode      = 0xE7
	idSimpleBlock   = 0xA3
	idBlockGroup    = 0xA0
	idBlock         = 0xA1
	idBlockDuration = 0x9B
	idCues          = 0x1C53BB6B
	idTags          = 0x1254C367
	idChapters      = 0x1043A770
	idAttachments   = 0x1941A469
	idVoid          = 0xEC
	idCRC32         = 0xBF
	idPosition      = 0xA7
	idPrevSize      = 0xAB
	idSilentTracks  = 0x5854
	idEncrypted     = 0xAF
)

const (
	trackTypeAudio = 2
	// defaultOpusFrame is assumed for a block whose packet cannot be read;
	// it is what browsers' MediaRecorder uses.
	defaultOpusFrame = 960
	// clusterRing is how many trailing known-size clusters are remembered
	// to find the last one holding audio; they are skipped, not read.
	clusterRing = 16
)

type ebmlElem struct {
	id   uint32
	off  int64 // header start
	data int64 // payload start
	size int64 // -1 when unknown (all value bits set)
}

func (e ebmlElem) end() int64 { return e.data + e.size }

type webmProber struct {
	size int64
	s    *source

	scale      float64 // nanoseconds per timecode tick
	track      uint64
	channels   int
	haveTracks bool

	blocks     int
	start, end float64 // ns, of the first block and the latest block end
}

func probeWebM(r io.ReaderAt, size int64) (Info, error) {
	w := &webmProber{size: size, s: newSource(r, size, 4<<10), scale: 1e6}

	hdr, ok, err := w.elem(0)
	if err != nil {
		return Info{}, err
	}
	if !ok || hdr.size < 0 || hdr.end() > size {
		return Info{}, corruptf("webm: the file ends after %d bytes, inside the EBML header: truncated upload?", size)
	}
	if hdr.size > 4<<10 {
		return Info{}, corruptf("webm: the EBML header claims %d bytes: damaged file", hdr.size)
	}
	docType := "matroska" // the EBML default when the header omits it
	err = w.children(hdr, func(c ebmlElem) error {
		var err error
		if c.id == idDocType {
			docType, err = w.readStr(c, 32)
		}
		return err
	})
	if err != nil {
		return Info{}, err
	}
	switch docType {
	case "webm":
	case "matroska":
		return Info{}, unsupportedf("audio: this is a Matroska (.mka/.mkv) file, not WebM; %s", weTake)
	default:
		return Info{}, unsupportedf("audio: this is an EBML file of type %q, not WebM; %s", printable([]byte(docType)), weTake)
	}

	// Only Void/CRC elements may sit between the header and the Segment;
	// each is at least 2 bytes, so the loop ends.
	pos := hdr.end()
	var seg ebmlElem
	for {
		e, ok, err := w.elem(pos)
		if err != nil {
			return Info{}, err
		}
		if !ok {
			return Info{}, corruptf("webm: the file ends after %d bytes, before the Segment: truncated upload?", size)
		}
		if e.id == idSegment {
			seg = e
			break
		}
		if e.size < 0 || (e.id != idVoid && e.id != idCRC32) {
			return Info{}, corruptf("webm: unexpected element 0x%X where the Segment should start", e.id)
		}
		pos = e.end()
	}
	sized := seg.size >= 0
	segEnd := size
	if sized {
		if seg.end() > size {
			return Info{}, corruptf("webm: the Segment says %d bytes but the file ends after %d: truncated upload?", seg.size, size-seg.data)
		}
		segEnd = seg.end()
	}

	var (
		duration     float64 // in ticks, 0 when absent or unusable
		ring         [clusterRing]ebmlElem
		nring        int
		sawCluster   bool
		tracksCutOff bool
	)
	// Each step moves pos past an element header at least, so this ends.
walk:
	for pos = seg.data; pos < segEnd; {
		e, ok, err := w.elem(pos)
		if err != nil {
			return Info{}, err
		}
		if !ok {
			break
		}
		next := e.end()
		switch e.id {
		case idInfo:
			if e.size < 0 {
				return Info{}, corruptf("webm: the Info element has no size")
			}
			if duration, err = w.info(e); err != nil {
				return Info{}, err
			}
		case idTracks:
			if e.size < 0 {
				return Info{}, corruptf("webm: the Tracks element has no size")
			}
			tracksCutOff = e.end() > size
			if err := w.tracks(e); err != nil {
				return Info{}, err
			}
		case idCluster:
			if !w.haveTracks {
				if tracksCutOff {
					return Info{}, corruptf("webm: the file is cut off inside the track list")
				}
				return Info{}, corruptf("webm: audio comes before any track list (or it has no Opus track): damaged file")
			}
			if !sawCluster && sized && duration > 0 {
				// A finished file (sizes filled in, so not cut
				// off) says how long it is; trust it rather than
				// read the clusters.
				return w.result(duration * w.scale)
			}
			first := !sawCluster
			sawCluster = true
			if e.size >= 0 && e.end() <= size && !first {
				// Only the last clusters matter: skip this one
				// unread but remember it.
				ring[nring%clusterRing] = e
				nring++
				break
			}
			nring = 0 // clusters before this one end earlier
			n, stop, err := w.cluster(e)
			if err != nil {
				return Info{}, err
			}
			if stop {
				break walk
			}
			next = n
		case idEBML, idSegment:
			break walk // a second, chained segment: not ours to measure
		default:
			if e.size < 0 {
				break walk // cannot step over an unknown-size element
			}
		}
		pos = next
	}
	if !w.haveTracks {
		if tracksCutOff {
			return Info{}, corruptf("webm: the file is cut off inside the track list: truncated upload?")
		}
		return Info{}, corruptf("webm: the file ends after %d bytes without a track list: truncated upload?", size)
	}
	// The latest skipped clusters, newest first, until one has audio.
	for i := nring - 1; i >= 0 && i >= nring-clusterRing; i-- {
		before := w.blocks
		if _, _, err := w.cluster(ring[i%clusterRing]); err != nil {
			return Info{}, err
		}
		if w.blocks > before {
			break
		}
	}
	if w.blocks == 0 {
		return Info{}, corruptf("webm: no Opus audio blocks in the file (%d bytes): truncated upload?", size)
	}
	return w.result(w.end - w.start)
}

func (w *webmProber) result(ns float64) (Info, error) {
	// Checked as a float: converting one beyond int64 is undefined.
	if !(ns > 0) || ns > float64(maxPlausible(w.size)) {
		return Info{}, corruptf("webm: timestamps give a duration of %.3fs for a %d-byte file: damaged file", ns/1e9, w.size)
	}
	return Info{
		Format:     formatWebM,
		MIME:       "audio/webm",
		Duration:   time.Duration(ns),
		SampleRate: opusRate,
		Channels:   w.channels,
	}, nil
}

// elem decodes the element header at off; ok is false if it is malformed or
// cut off by the end of the file.
func (w *webmProber) elem(off int64) (ebmlElem, bool, error) {
	b, err := w.s.at(off, 12)
	if err != nil {
		return ebmlElem{}, false, err
	}
	if len(b) < 2 {
		return ebmlElem{}, false, nil
	}
	il := vintLen(b[0])
	if il == 0 || il > 4 || len(b) < il+1 {
		return ebmlElem{}, false, nil
	}
	e := ebmlElem{off: off}
	for _, c := range b[:il] {
		e.id = e.id<<8 | uint32(c)
	}
	v, sl, unknown := vint(b[il:])
	if sl == 0 {
		return ebmlElem{}, false, nil
	}
	e.data = off + int64(il+sl)
	e.size = int64(v)
	if unknown {
		e.size = -1
	} else if v > 1<<56 {
		return ebmlElem{}, false, nil
	}
	return e, true, nil
}

func vintLen(b byte) int {
	for i := range 8 {
		if b&(0x80>>i) != 0 {
			return i + 1
		}
	}
	return 0
}

// vint decodes a variable-length integer with its marker bit removed. n is
// 0 if b is too short or malformed; unknown reports all value bits set.
func vint(b []byte) (v uint64, n int, unknown bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	n = vintLen(b[0])
	if n == 0 || len(b) < n {
		return 0, 0, false
	}
	v = uint64(b[0] & (0xff >> n))
	for _, c := range b[1:n] {
		v = v<<8 | uint64(c)
	}
	return v, n, v == 1<<(7*n)-1
}

// children calls f for each child of a known-size master element, stopping
// at the end of the file or at a malformed child.
func (w *webmProber) children(e ebmlElem, f func(ebmlElem) error) error {
	end := min(e.end(), w.size)
	for pos := e.data; pos < end; {
		c, ok, err := w.elem(pos)
		if err != nil {
			return err
		}
		if !ok || c.size < 0 || c.end() > end {
			return nil
		}
		if err := f(c); err != nil {
			return err
		}
		pos = c.end()
	}
	return nil
}

func (w *webmProber) readUint(e ebmlElem) (uint64, error) {
	if e.size > 8 {
		return 0, nil
	}
	b, err := w.s.at(e.data, int(e.size))
	if err != nil {
		return 0, err
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

func (w *webmProber) readFloat(e ebmlElem) (float64, error) {
	b, err := w.s.at(e.data, int(min(e.size, 8)))
	if err != nil {
		return 0, err
	}
	switch {
	case e.size == 4 && len(b) == 4:
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b))), nil
	case e.size == 8 && len(b) == 8:
		return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
	}
	return 0, nil
}

func (w *webmProber) readStr(e ebmlElem, limit int) (string, error) {
	b, err := w.s.at(e.data, int(min(e.size, int64(limit))))
	if err != nil {
		return "", err
	}
	// Matroska strings may be zero-padded.
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return string(b), nil
}

// info reads the Segment Info, returning the Duration in ticks, or 0 when
// it is absent or implausible (then the clusters are measured instead).
func (w *webmProber) info(e ebmlElem) (float64, error) {
	var dur float64
	err := w.children(e, func(c ebmlElem) error {
		var err error
		switch c.id {
		case idTimecodeScale:
			var v uint64
			if v, err = w.readUint(c); err == nil && v > 0 && v <= 1e9 {
				w.scale = float64(v)
			}
		case idDuration:
			dur, err = w.readFloat(c)
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	if ns := dur * w.scale; math.IsNaN(ns) || ns <= 0 || ns > float64(maxPlausible(w.size)) {
		return 0, nil
	}
	return dur, nil
}

// tracks picks the first Opus audio track.
func (w *webmProber) tracks(e ebmlElem) error {
	var otherAudio string
	err := w.children(e, func(te ebmlElem) error {
		if te.id != idTrackEntry || w.haveTracks {
			return nil
		}
		var (
			num      uint64
			typ      uint64
			codec    string
			channels uint64 = 1 // the Matroska default
		)
		err := w.children(te, func(c ebmlElem) error {
			var err error
			switch c.id {
			case idTrackNumber:
				num, err = w.readUint(c)
			case idTrackType:
				typ, err = w.readUint(c)
			case idCodecID:
				codec, err = w.readStr(c, 64)
			case idAudio:
				err = w.children(c, func(a ebmlElem) error {
					var err error
					if a.id == idChannels {
						channels, err = w.readUint(a)
					}
					return err
				})
			}
			return err
		})
		if err != nil {
			return err
		}
		isAudio := typ == trackTypeAudio || (len(codec) > 2 && codec[:2] == "A_")
		switch {
		case codec == "A_OPUS" && num == 0:
			return corruptf("webm: the Opus track has no track number")
		case codec == "A_OPUS":
			w.track, w.haveTracks = num, true
			w.channels = int(min(channels, 255))
		case isAudio && otherAudio == "":
			otherAudio = codec
		}
		return nil
	})
	if err != nil || w.haveTracks {
		return err
	}
	if e.end() > w.size {
		return nil // cut off: the caller reports it
	}
	if otherAudio != "" {
		return unsupportedf("audio: this is WebM with %s audio; only Opus is taken in WebM; %s", printable([]byte(otherAudio)), weTake)
	}
	return unsupportedf("audio: this WebM file has no audio track; %s", weTake)
}

// isTopLevel reports IDs that can only be Segment children: in an
// unknown-size Cluster, meeting one means the Cluster has ended.
func isTopLevel(id uint32) bool {
	switch id {
	case idCluster, idCues, idTags, idChapters, idAttachments, idSeekHead,
		idInfo, idTracks, idEBML, idSegment:
		return true
	}
	return false
}

// cluster reads the blocks of a cluster, recording the first start and the
// latest end of our track's blocks. It returns where the cluster ends (for
// unknown-size clusters, where the next top-level element starts), and stop
// when the file ends or is damaged within it.
func (w *webmProber) cluster(e ebmlElem) (next int64, stop bool, err error) {
	end := w.size
	if e.size >= 0 {
		end = min(e.end(), w.size)
	}
	if e.size < 0 {
		// Every block must be stepped through to find where an
		// unknown-size cluster ends, so read in big sequential chunks.
		w.s.chunk = max(w.s.chunk, 64<<10)
	}
	var tc float64
	// Each child is at least 2 bytes, so this ends.
	pos := e.data
	for pos < end {
		c, ok, err := w.elem(pos)
		if err != nil {
			return 0, false, err
		}
		if !ok {
			return 0, true, nil
		}
		if e.size < 0 && isTopLevel(c.id) {
			return pos, false, nil
		}
		if c.size < 0 || c.end() > w.size {
			return 0, true, nil // a block cut off by a truncated upload
		}
		switch c.id {
		case idTimecode:
			v, err := w.readUint(c)
			if err != nil {
				return 0, false, err
			}
			tc = float64(v)
		case idSimpleBlock:
			if err := w.block(c, tc, -1); err != nil {
				return 0, false, err
			}
		case idBlockGroup:
			var blk ebmlElem
			dur := -1.0
			err := w.children(c, func(g ebmlElem) error {
				switch g.id {
				case idBlock:
					blk = g
				case idBlockDuration:
					v, err := w.readUint(g)
					dur = float64(v)
					return err
				}
				return nil
			})
			if err != nil {
				return 0, false, err
			}
			if blk.id == idBlock {
				if err := w.block(blk, tc, dur); err != nil {
					return 0, false, err
				}
			}
		case idVoid, idCRC32, idPosition, idPrevSize, idSilentTracks, idEncrypted:
		default:
			if e.size < 0 {
				// Neither a cluster child nor a top-level element:
				// garbage where the next block should be.
				return 0, true, nil
			}
		}
		pos = c.end()
	}
	if e.size >= 0 {
		return e.end(), e.end() > w.size, nil
	}
	return pos, true, nil
}

// block records one Block/SimpleBlock. dur is the BlockDuration in ticks, or
// -1 when absent, in which case the Opus packet's own length is used.
func (w *webmProber) block(e ebmlElem, clusterTC, dur float64) error {
	b, err := w.s.at(e.data, int(min(e.size, 32)))
	if err != nil {
		return err
	}
	track, n, _ := vint(b)
	if n == 0 || len(b) < n+3 || track != w.track {
		return nil
	}
	rel := float64(int16(binary.BigEndian.Uint16(b[n:])))
	flags := b[n+2]
	payload := b[n+3:]

	var ns float64
	if dur >= 0 {
		ns = dur * w.scale
	} else {
		frames, samples := 1, 0
		if lacing := (flags >> 1) & 3; lacing != 0 {
			// Laced frames are assumed as long as the first; its
			// TOC is not located, so use the default frame.
			if len(payload) > 0 {
				frames = int(payload[0]) + 1
			}
		} else {
			samples = opusPacketSamples(payload)
		}
		if samples == 0 {
			samples = defaultOpusFrame
		}
		ns = float64(frames*samples) * 1e9 / opusRate
	}
	startNS := (clusterTC + rel) * w.scale
	if w.blocks == 0 || startNS < w.start {
		w.start = startNS
	}
	if endNS := startNS + ns; w.blocks == 0 || endNS > w.end {
		w.end = endNS
	}
	w.blocks++
	return nil
}

// opusPacketSamples reads an Opus packet's TOC (RFC 6716 §3.1) for how many
// 48 kHz samples it holds; 0 if it cannot tell.
func opusPacketSamples(p []byte) int {
	if len(p) == 0 {
		return 0
	}
	toc := p[0]
	cfg := toc >> 3
	var frame int
	switch {
	case cfg < 12: // SILK: 10, 20, 40, 60 ms
		frame = [4]int{480, 960, 1920, 2880}[cfg&3]
	case cfg < 16: // hybrid: 10, 20 ms
		frame = [2]int{480, 960}[cfg&1]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = [4]int{120, 240, 480, 960}[cfg&3]
	}
	switch toc & 3 {
	case 0:
		return frame
	case 1, 2:
		return 2 * frame
	}
	if len(p) < 2 {
		return 0
	}
	return int(p[1]&0x3f) * frame
}
