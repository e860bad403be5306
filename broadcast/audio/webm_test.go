package audio

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestWebM(t *testing.T) {
	cases := []struct {
		name string
		b    []byte
		want time.Duration
	}{
		// What Chrome's MediaRecorder writes: no Duration, Segment and
		// Clusters of unknown size.
		{"mediarecorder", webm(webmSpec{d: 2.5, perCluster: 50, unknownSize: true}), 2500 * time.Millisecond},
		{"mediarecorder one cluster", webm(webmSpec{d: 1.2, perCluster: 1000, unknownSize: true}), 1200 * time.Millisecond},
		// Tools that patch Duration in but keep unknown sizes: the blocks
		// are measured anyway, since nothing says the file is whole.
		{"unknown sizes with a wrong duration", webm(webmSpec{d: 2, perCluster: 50, unknownSize: true, duration: 9000}), 2 * time.Second},
		{"duration", webm(webmSpec{d: 2, perCluster: 50, duration: 1999.5}), 1999500 * time.Microsecond},
		{"known sizes without duration", webm(webmSpec{d: 3, perCluster: 7}), 3 * time.Second},
		{"many known-size clusters", webm(webmSpec{d: 10, perCluster: 1}), 10 * time.Second},
		{"implausible duration is measured instead", webm(webmSpec{d: 1, perCluster: 50, duration: 1e15}), time.Second},
		{"block group with duration", append(webmHeader("webm"), el(idSegment,
			el(idInfo, elUint(idTimecodeScale, 1000000)),
			webmTracks("A_OPUS"),
			el(idCluster, elUint(idTimecode, 1000),
				simpleBlock(1, 0, opusPacket20ms),
				el(idBlockGroup, el(idBlock, []byte{0x81, 0x00, 100, 0x00}, opusPacket20ms), elUint(idBlockDuration, 60))),
		)...), 160 * time.Millisecond},
		{"other tracks' blocks are ignored", append(webmHeader("webm"), elUnknown(idSegment,
			webmTracks("A_OPUS"),
			elUnknown(idCluster, elUint(idTimecode, 0),
				simpleBlock(1, 0, opusPacket20ms),
				simpleBlock(1, 20, opusPacket20ms),
				simpleBlock(2, 5000, opusPacket20ms)),
		)...), 40 * time.Millisecond},
		// 60 ms SILK packets (TOC config 3) and a 2-frame packet.
		{"packet durations from the TOC", append(webmHeader("webm"), elUnknown(idSegment,
			webmTracks("A_OPUS"),
			elUnknown(idCluster, elUint(idTimecode, 0),
				simpleBlock(1, 0, []byte{3 << 3, 1}),
				simpleBlock(1, 60, []byte{3<<3 | 1, 1})),
		)...), 180 * time.Millisecond},
		{"cut-off block is not counted", func() []byte {
			b := webm(webmSpec{d: 1, perCluster: 50, unknownSize: true})
			return b[:len(b)-2]
		}(), 980 * time.Millisecond},
		{"void and cues", append(webmHeader("webm"), el(idVoid, make([]byte, 10))...), 0},
	}
	// Void before the Segment, and Cues after the clusters.
	cases[len(cases)-1].b = append(cases[len(cases)-1].b, el(idSegment,
		el(idVoid, make([]byte, 30)),
		el(idInfo, elUint(idTimecodeScale, 1000000)),
		webmTracks("A_OPUS"),
		el(idCluster, elUint(idTimecode, 0), simpleBlock(1, 0, opusPacket20ms), simpleBlock(1, 20, opusPacket20ms)),
		el(idCues, make([]byte, 20)),
	)...)
	cases[len(cases)-1].want = 40 * time.Millisecond

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info, err := probeBytes(t, c.b)
			if err != nil {
				t.Fatal(err)
			}
			if info.Format != formatWebM || info.MIME != "audio/webm" || info.Duration != c.want || info.SampleRate != 48000 || info.Channels != 1 {
				t.Errorf("got %+v, want %v", info, c.want)
			}
		})
	}
}

func TestWebMCorrupt(t *testing.T) {
	whole := webm(webmSpec{d: 2, perCluster: 50, duration: 2000})
	cases := []struct {
		name, msg string
		b         []byte
	}{
		{"known-size segment cut", "the Segment says", whole[:len(whole)-100]},
		{"header cut", "inside the EBML header", whole[:10]},
		{"no segment", "before the Segment", webmHeader("webm")},
		{"no tracks", "without a track list", append(webmHeader("webm"), elUnknown(idSegment, el(idInfo, elUint(idTimecodeScale, 1000000)))...)},
		{"cluster before tracks", "before any track list", append(webmHeader("webm"), elUnknown(idSegment,
			elUnknown(idCluster, elUint(idTimecode, 0), simpleBlock(1, 0, opusPacket20ms)))...)},
		{"no blocks", "no Opus audio blocks", append(webmHeader("webm"), elUnknown(idSegment, webmTracks("A_OPUS"))...)},
		{"hostile timecode", "damaged file", append(webmHeader("webm"), elUnknown(idSegment, webmTracks("A_OPUS"),
			elUnknown(idCluster, elUint(idTimecode, 0), simpleBlock(1, 0, opusPacket20ms)),
			elUnknown(idCluster, elUint(idTimecode, 1<<50), simpleBlock(1, 0, opusPacket20ms)))...)},
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
