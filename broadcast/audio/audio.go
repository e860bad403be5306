// Package audio identifies an uploaded programme file and measures how long
// it plays, without decoding it and without reading it whole: programmes can
// be ~100 MB, so every parser reads headers through bounded ReadAt calls.
//
// Accepted formats are MP3 (MPEG-1/2/2.5 Layer III), WAV (PCM or IEEE float,
// plain or WAVE_FORMAT_EXTENSIBLE), Ogg/Opus and WebM/Opus (what browsers'
// MediaRecorder produces). Anything else is ErrUnsupported; a file that is
// clearly one of these but cannot be measured is ErrCorrupt.
package audio

import (
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// Info describes a probed file.
type Info struct {
	Format string // "mp3", "wav", "ogg-opus", "webm-opus"
	MIME   string // "audio/mpeg", "audio/wav", "audio/ogg", "audio/webm"
	// Duration is how long the file plays; it is always > 0 when Probe
	// returns no error.
	Duration time.Duration
	// SampleRate is in Hz, 0 when unknown. Opus always decodes at 48000 Hz,
	// so that is what Opus files report, whatever rate the encoder was fed.
	SampleRate int
	Channels   int // 0 when unknown
}

var (
	// ErrUnsupported means the file is not audio in a format we take
	// (HTTP 415): a picture, text, Ogg Vorbis, FLAC, AAC, ...
	ErrUnsupported = errors.New("unsupported audio format")
	// ErrCorrupt means the file looks like a format we take but is
	// truncated, damaged or holds no audio (HTTP 422).
	ErrCorrupt = errors.New("corrupt audio")
)

const (
	formatMP3  = "mp3"
	formatWAV  = "wav"
	formatOgg  = "ogg-opus"
	formatWebM = "webm-opus"
)

func corruptf(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrCorrupt)...)
}

func unsupportedf(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrUnsupported)...)
}

// weTake ends every "wrong format" message so the uploader knows what to
// convert to.
const weTake = "upload MP3, WAV, Ogg/Opus or WebM/Opus"

// Probe identifies the audio in the first size bytes of r and measures its
// duration. Errors wrap ErrUnsupported or ErrCorrupt, except failures of r
// itself, which are returned wrapped as they are.
func Probe(r io.ReaderAt, size int64) (Info, error) {
	if size <= 0 {
		return Info{}, unsupportedf("audio: the file is empty; " + weTake)
	}
	s := newSource(r, size, 64)
	head, err := s.at(0, 16)
	if err != nil {
		return Info{}, err
	}
	var info Info
	switch {
	case hasPrefix(head, "RIFF"):
		info, err = probeWAV(r, size)
	case hasPrefix(head, "OggS"):
		info, err = probeOgg(r, size)
	case hasPrefix(head, "\x1a\x45\xdf\xa3"):
		info, err = probeWebM(r, size)
	default:
		if name := sniffOther(head); name != "" {
			return Info{}, unsupportedf("audio: this is %s, not a format we take; %s", name, weTake)
		}
		// MP3 has no magic number (and may start with an ID3 tag or
		// even junk), so it is the fallback.
		info, err = probeMP3(r, size)
	}
	if err != nil {
		return Info{}, err
	}
	if info.Duration <= 0 {
		return Info{}, corruptf("%s: the file holds no audio", info.Format)
	}
	if info.Duration > maxPlausible(size) {
		return Info{}, corruptf("%s: the headers claim %v of audio from only %d bytes: damaged file", info.Format, info.Duration, size)
	}
	return info, nil
}

// Kind names the format of a file that Probe accepted, from its first 16
// bytes (Probe's own dispatch), so that a stored file can be served with
// the MIME type its upload was given without probing it again: the
// extension and the MIME type of Info.
func Kind(head []byte) (ext, mime string) {
	switch {
	case hasPrefix(head, "RIFF"):
		return "wav", "audio/wav"
	case hasPrefix(head, "OggS"):
		return "opus", "audio/ogg"
	case hasPrefix(head, "\x1a\x45\xdf\xa3"):
		return "webm", "audio/webm"
	}
	return "mp3", "audio/mpeg"
}

// sniffOther names well-known non-audio and unsupported-audio formats so the
// error says what the file is instead of just "not audio".
func sniffOther(h []byte) string {
	switch {
	case hasPrefix(h, "fLaC"):
		return "FLAC"
	case hasPrefix(h, "RF64"), hasPrefix(h, "BW64"):
		return "an RF64 (over 4 GB) WAV"
	case hasPrefix(h, "FORM") && len(h) >= 12 && (string(h[8:12]) == "AIFF" || string(h[8:12]) == "AIFC"):
		return "AIFF"
	case len(h) >= 8 && string(h[4:8]) == "ftyp":
		return "an MP4/M4A (AAC) file"
	case len(h) >= 2 && h[0] == 0xff && h[1]&0xf6 == 0xf0:
		return "AAC (ADTS)"
	case len(h) >= 2 && h[0] == 0xff && h[1]&0xe0 == 0xe0 && (h[1]>>1)&3 >= 2 && (h[1]>>3)&3 != 1:
		return "MPEG layer I/II audio (MP2)"
	case hasPrefix(h, "#!AMR"):
		return "AMR"
	case hasPrefix(h, "MThd"):
		return "MIDI"
	case hasPrefix(h, "\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
		return "WMA/ASF"
	case hasPrefix(h, "\x89PNG"):
		return "a PNG image"
	case hasPrefix(h, "\xff\xd8\xff"):
		return "a JPEG image"
	case hasPrefix(h, "GIF8"):
		return "a GIF image"
	case hasPrefix(h, "%PDF"):
		return "a PDF document"
	case hasPrefix(h, "PK\x03\x04"):
		return "a ZIP archive (or Office document)"
	}
	return ""
}

func hasPrefix(b []byte, p string) bool {
	return len(b) >= len(p) && string(b[:len(p)]) == p
}

// maxPlausible caps a duration claimed by a header against the file size.
// The leanest stream we accept is Opus with 1-byte packets of 120 ms, i.e.
// a little over 8 bytes a second, so anything longer than size/8 seconds is
// a damaged or hostile header, not audio.
func maxPlausible(size int64) time.Duration {
	if size >= math.MaxInt64/int64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(size) * time.Second / 8
}

// samplesToDuration converts without overflowing for any int64 sample count;
// the result saturates, and callers reject it as implausible.
func samplesToDuration(samples, rate int64) time.Duration {
	if rate <= 0 || samples <= 0 {
		return 0
	}
	secs := samples / rate
	if secs >= math.MaxInt64/int64(time.Second) {
		return math.MaxInt64
	}
	rem := samples % rate
	return time.Duration(secs)*time.Second + time.Duration(rem*int64(time.Second)/rate)
}

// source serves small reads at arbitrary offsets of a ReaderAt, reading ahead
// up to chunk bytes so that nearby reads (a header, then its fields) share
// one call. Slices it returns are valid only until its next call.
type source struct {
	r     io.ReaderAt
	size  int64
	chunk int
	buf   []byte
	off   int64
	n     int
}

func newSource(r io.ReaderAt, size int64, chunk int) *source {
	return &source{r: r, size: size, chunk: chunk}
}

// at returns the n bytes at off, or fewer if the file ends first (none at or
// past the end). Only a failure of the ReaderAt itself is an error.
func (s *source) at(off int64, n int) ([]byte, error) {
	if off < 0 || off >= s.size || n <= 0 {
		return nil, nil
	}
	if rest := s.size - off; int64(n) > rest {
		n = int(rest)
	}
	if off >= s.off && off+int64(n) <= s.off+int64(s.n) {
		i := int(off - s.off)
		return s.buf[i : i+n], nil
	}
	want := max(n, s.chunk)
	if rest := s.size - off; int64(want) > rest {
		want = int(rest)
	}
	if cap(s.buf) < want {
		s.buf = make([]byte, want)
	}
	s.buf = s.buf[:want]
	m, err := s.r.ReadAt(s.buf, off)
	if m < want {
		s.n = 0
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("audio: reading %d bytes at offset %d of a %d-byte file: %w", want, off, s.size, err)
	}
	s.off, s.n = off, want
	return s.buf[:n], nil
}
