package audio

import (
	"encoding/binary"
	"io"
)

const (
	wavPCM        = 0x0001
	wavFloat      = 0x0003
	wavExtensible = 0xfffe
)

// wavStreaming is the data size written by recorders that cannot seek back
// to fill it in; such a data chunk runs to the end of the file.
const wavStreaming = 0xffffffff

func probeWAV(r io.ReaderAt, size int64) (Info, error) {
	s := newSource(r, size, 512)
	if size < 12 {
		return Info{}, corruptf("wav: the file ends after %d bytes, inside the RIFF header: truncated upload?", size)
	}
	h, err := s.at(0, 12)
	if err != nil {
		return Info{}, err
	}
	if string(h[8:12]) != "WAVE" {
		return Info{}, unsupportedf("audio: this is a RIFF file of type %q, not WAVE audio; %s", printable(h[8:12]), weTake)
	}

	var (
		haveFmt, haveData bool
		channels, rate    int
		blockAlign        int64
		dataSize          int64
	)
	// Each step moves pos forward by at least 8 bytes, so this ends.
	for pos := int64(12); pos < size && !(haveFmt && haveData); {
		ch, err := s.at(pos, 8)
		if err != nil {
			return Info{}, err
		}
		if len(ch) < 8 {
			break // a few stray bytes after the last chunk
		}
		id := string(ch[:4])
		n := int64(binary.LittleEndian.Uint32(ch[4:8]))
		body := pos + 8
		switch id {
		case "fmt ":
			if n < 16 {
				return Info{}, corruptf("wav: the fmt chunk is %d bytes; it needs at least 16", n)
			}
			f, err := s.at(body, 40)
			if err != nil {
				return Info{}, err
			}
			if int64(len(f)) < min(n, 40) {
				return Info{}, corruptf("wav: the file ends after %d bytes, inside the fmt chunk: truncated upload?", size)
			}
			f = f[:min(n, 40)]
			tag := binary.LittleEndian.Uint16(f[0:2])
			channels = int(binary.LittleEndian.Uint16(f[2:4]))
			rate = int(binary.LittleEndian.Uint32(f[4:8]))
			blockAlign = int64(binary.LittleEndian.Uint16(f[12:14]))
			bits := int(binary.LittleEndian.Uint16(f[14:16]))
			if tag == wavExtensible {
				if len(f) < 40 {
					return Info{}, corruptf("wav: WAVE_FORMAT_EXTENSIBLE fmt chunk is %d bytes; it needs 40", n)
				}
				// The sub-format GUID's first two bytes carry the
				// plain format tag; the rest is the fixed KSDATAFORMAT suffix.
				tag = binary.LittleEndian.Uint16(f[24:26])
			}
			switch tag {
			case wavPCM, wavFloat:
			default:
				return Info{}, unsupportedf("audio: WAV with %s audio (format tag 0x%04x); only PCM and IEEE-float WAV are taken; %s", wavTagName(tag), tag, weTake)
			}
			if channels == 0 || rate == 0 || blockAlign == 0 || bits == 0 {
				return Info{}, corruptf("wav: the fmt chunk is damaged (%d channels, %d Hz, block align %d, %d bits)", channels, rate, blockAlign, bits)
			}
			haveFmt = true
		case "data":
			dataSize = n
			if n == wavStreaming {
				dataSize = size - body
			} else if body+n > size {
				return Info{}, corruptf("wav: data chunk says %d bytes but the file ends after %d: truncated upload?", n, max(size-body, 0))
			}
			haveData = true
		}
		// Chunks are word aligned: an odd-sized chunk is followed by a pad byte.
		pos = body + n + n&1
	}
	if !haveFmt {
		return Info{}, corruptf("wav: no fmt chunk before the file ends at %d bytes: truncated upload?", size)
	}
	if !haveData {
		return Info{}, corruptf("wav: no data chunk before the file ends at %d bytes: truncated upload?", size)
	}
	// The header's byte-rate field is redundant and sometimes wrong;
	// players consume block-align bytes per sample frame.
	frames := dataSize / blockAlign
	if frames == 0 {
		return Info{}, corruptf("wav: the data chunk holds no whole sample frame (%d bytes, %d per frame)", dataSize, blockAlign)
	}
	return Info{
		Format:     formatWAV,
		MIME:       "audio/wav",
		Duration:   samplesToDuration(frames, int64(rate)),
		SampleRate: rate,
		Channels:   channels,
	}, nil
}

func wavTagName(tag uint16) string {
	switch tag {
	case 0x0002:
		return "MS ADPCM"
	case 0x0006:
		return "A-law"
	case 0x0007:
		return "µ-law"
	case 0x0011:
		return "IMA ADPCM"
	case 0x0031:
		return "GSM 6.10"
	case 0x0050:
		return "MPEG"
	case 0x0055:
		return "MP3"
	}
	return "compressed"
}

// printable keeps hostile bytes out of error messages (they end up in HTTP
// responses and logs).
func printable(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out[i] = c
	}
	return string(out)
}
