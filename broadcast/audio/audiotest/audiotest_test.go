package audiotest

import (
	"bytes"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast/audio"
)

func TestWAVProbes(t *testing.T) {
	b := WAV(2500 * time.Millisecond)
	info, err := audio.Probe(bytes.NewReader(b), int64(len(b)))
	if err != nil || info.Format != "wav" || info.Duration != 2500*time.Millisecond {
		t.Fatalf("probe = %+v, %v; want a 2.5 s wav", info, err)
	}
}
