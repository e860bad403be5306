package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loaxa/loaxa/audit/audittest"
	"github.com/loaxa/loaxa/broadcast"
)

// TestParallelMatchesVerifier feeds the same damaged log, several batches
// long, to Verifier and to ParallelVerifier with several worker counts: the
// problems must be the same, in the same order.
func TestParallelMatchesVerifier(t *testing.T) {
	l := newMemLog(t, "14755-01", "14755-02", "14758-01")
	devs := []string{"14755-01", "14755-02", "14758-01", "99999-01"} // the last one is not registered
	l.keys["99999-01"], l.devices["99999-01"] = l.keys["14755-01"], broadcast.Device{}
	at := time.Date(2026, 12, 1, 6, 0, 0, 0, ict)
	for i := range 3*batchSize + 17 {
		l.add(t, devs[i%3], at.Add(time.Duration(i)*time.Minute))
	}
	es := slices.Clone(l.asrun)
	es[5].Payload = bytes.Replace(es[5].Payload, []byte("900412"), []byte("900413"), 1) // altered, bad signature
	es[300].Payload = []byte("not json")                                                // altered, not an event
	es[301].DeviceSeq++                                                                 // names another seq (not hashed)
	// Off the fast path of DecodeEventFast: JSON the device did not write.
	es[310].Payload = bytes.Replace(es[310].Payload, []byte(`{"body":`), []byte(`{ "body" : `), 1)      // same event and signature, altered bytes
	es[320].Payload = bytes.Replace(es[320].Payload, []byte(`"seq":`), []byte(`"seq":999,"seq":`), 1)   // the last seq wins: the same event, a bad signature
	es[330].Payload = bytes.Replace(es[330].Payload, []byte(`,"rev":`), []byte(`,"SEQ":999,"rev":`), 1) // keys match in any case
	es[340].Payload = bytes.Replace(es[340].Payload, []byte(`"seq":`), []byte(`"seq":1.5,"x":`), 1)     // not an event
	es = append(es[:400], es[401:]...)                                                                  // a gap
	es[600], es[601] = es[601], es[600]                                                                 // reordered
	_, forger, _ := ed25519.GenerateKey(nil)
	es[700].Payload = signedEvent(t, es[700].Device, es[700].DeviceSeq, es[700].ReceivedAt, forger)
	es[700].Hash = es[700].ChainHash()
	es[750].Device = "99999-01"

	key := func(d string) (ed25519.PublicKey, bool) {
		dev, ok := l.devices[d]
		return dev.PublicKey, ok && d != "99999-01"
	}
	v := &Verifier{Key: key}
	for _, e := range es {
		v.AsRun(e)
	}
	want := slices.Clone(v.Problems)
	if len(want) < 10 {
		t.Fatalf("the damage shows as only %d problems", len(want))
	}
	for _, p := range []struct {
		entry uint64
		says  string
	}{{311, "altered"}, {321, "altered"}, {321, "signature"}, {331, "names another device, seq"}, {341, "not a valid event"}} {
		if !hasProblem(Result{Problems: want}, "asrun", p.entry, p.says) {
			t.Errorf("entry %d: no problem says %q", p.entry, p.says)
		}
	}
	head, last := l.asrun[len(l.asrun)-1].Hash, l.asrun[len(l.asrun)-1].Seq
	for _, workers := range []int{1, 2, 5} {
		pv := NewParallelVerifier(func(d string) (DeviceKey, bool) {
			k, ok := key(d)
			return DeviceKey{PublicKey: k}, ok
		}, workers)
		for _, e := range es {
			pv.AsRun(e)
		}
		r := pv.Result(head, last, broadcast.Hash{}, 0)
		if !slices.Equal(r.Problems, want) {
			t.Fatalf("%d workers:\n%s\nwant\n%s", workers, problemsOf(r), problemsOf(Result{Problems: want}))
		}
		if r.OK || r.Entries != uint64(len(es)) {
			t.Fatalf("%d workers: %+v", workers, r)
		}
	}
	// Without a key lookup, as Verifier with a nil Key: no signatures.
	pv := NewParallelVerifier(nil, 2)
	for _, e := range l.asrun {
		pv.AsRun(e)
	}
	if r := pv.Result(head, last, broadcast.Hash{}, 0); !r.OK {
		t.Fatalf("an intact log: %s", problemsOf(r))
	}
}

func TestParallelVerifierBoundsProblems(t *testing.T) {
	l := newMemLog(t, "14755-01")
	at := time.Date(2026, 12, 1, 6, 0, 0, 0, ict)
	for i := range 200 {
		l.add(t, "14755-01", at.Add(time.Duration(i)*time.Minute))
	}
	pv := NewParallelVerifier(func(string) (DeviceKey, bool) { return DeviceKey{}, false }, 2)
	for range MaxProblems/200 + 2 {
		for _, e := range l.asrun {
			pv.AsRun(e) // every one repeated and unregistered
		}
	}
	r := pv.Result(broadcast.Hash{}, 0, broadcast.Hash{}, 0)
	if len(r.Problems) > MaxProblems+3 || !strings.Contains(problemsOf(r), "more problems are not listed") {
		t.Fatalf("%d problems; the last: %+v", len(r.Problems), r.Problems[len(r.Problems)-1])
	}
}

// A verification abandoned halfway stops its workers.
func TestParallelVerifierClose(t *testing.T) {
	l := newMemLog(t, "14755-01")
	at := time.Date(2026, 12, 1, 6, 0, 0, 0, ict)
	for i := range 3 * batchSize {
		l.add(t, "14755-01", at.Add(time.Duration(i)*time.Minute))
	}
	before := runtime.NumGoroutine()
	pv := NewParallelVerifier(func(string) (DeviceKey, bool) { return DeviceKey{}, true }, 4)
	for _, e := range l.asrun[:batchSize+3] {
		pv.AsRun(e)
	}
	pv.Close()
	pv.Close()
	time.Sleep(10 * time.Millisecond)
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after Close, %d before", n, before)
	}
}

func TestVerifyLogs(t *testing.T) {
	l := threeMonths(t)
	ctx := context.Background()
	r, err := VerifyLogs(ctx, l, 0)
	if err != nil || !r.OK || r.Entries != uint64(len(l.asrun)) || r.OpEntries != uint64(len(l.ops)) {
		t.Fatalf("%+v %v\n%s", r, err, problemsOf(r))
	}
	l.asrun[20].Payload = bytes.Replace(l.asrun[20].Payload, []byte("900412"), []byte("900413"), 1)
	l.ops[3].Actor = "someone else"
	r, err = VerifyLogs(ctx, l, 0)
	if err != nil || r.OK || !hasProblem(r, "asrun", 21, "altered") || !hasProblem(r, "oplog", 4, "altered") {
		t.Fatalf("%v\n%s", err, problemsOf(r))
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for range 5000 {
		l.add(t, "14755-01", time.Date(2027, 2, 1, 0, 0, 0, 0, ict))
	}
	if _, err := VerifyLogs(cancelled, l, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled verification: %v", err)
	}
	broken := &failingDevices{memLog: l}
	if _, err := VerifyLogs(ctx, broken, 0); err == nil || !strings.Contains(err.Error(), "registry down") {
		t.Fatalf("a registry that fails: %v", err)
	}
}

type failingDevices struct{ *memLog }

func (failingDevices) Device(string) (broadcast.Device, error) {
	return broadcast.Device{}, errors.New("registry down")
}

// BenchmarkEd25519Verify is the single-core rate of the raw signature
// check, the floor of what verification costs.
func BenchmarkEd25519Verify(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	msg := bytes.Repeat([]byte("x"), 350)
	sig := ed25519.Sign(priv, msg)
	start := time.Now()
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("bad signature")
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "verifies/s")
}

// BenchmarkEd25519VerifyAllCores is the same check on every core at once:
// what the hardware gives, whatever the pipeline around it (two vCPUs that
// share a physical core give less than twice one).
func BenchmarkEd25519VerifyAllCores(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	msg := bytes.Repeat([]byte("x"), 350)
	sig := ed25519.Sign(priv, msg)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !ed25519.Verify(pub, msg, sig) {
				panic("bad signature")
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "verifies/s")
}

var (
	benchOnce sync.Once
	benchLog  []broadcast.AsRunEntry
)

const benchEntries = 1_000_000

// benchEntriesLog is a chain of a million signed entries of 100 devices,
// made once per process on every core (signing is half the cost of checking).
func benchEntriesLog(b *testing.B) []broadcast.AsRunEntry {
	benchOnce.Do(func() {
		const devices = 100
		keys := make([]ed25519.PrivateKey, devices)
		for i := range keys {
			_, keys[i], _ = ed25519.GenerateKey(nil)
		}
		log := make([]broadcast.AsRunEntry, benchEntries)
		at := time.Date(2026, 12, 1, 6, 0, 0, 0, ict)
		var wg sync.WaitGroup
		workers := runtime.GOMAXPROCS(0)
		for w := range workers {
			wg.Go(func() {
				for i := w; i < benchEntries; i += workers {
					d := i % devices
					dev := fmt.Sprintf("14755-%02d", d)
					seq := uint64(i/devices + 1)
					when := at.Add(time.Duration(i) * time.Second)
					log[i] = broadcast.AsRunEntry{
						Seq: uint64(i + 1), ReceivedAt: when.UTC(), Device: dev, Station: "14755", Airing: "01JF3Q7W6Z9M2X8K4T5R1N0ABC",
						DeviceSeq: seq, Event: broadcast.EventFinished, Payload: signedEvent(b, dev, seq, when, keys[d]),
					}
				}
			})
		}
		wg.Wait()
		for i := range log {
			if i > 0 {
				log[i].PrevHash = log[i-1].Hash
			}
			log[i].Hash = log[i].ChainHashIn(benchForms)
		}
		benchLog = log
		benchKeys = map[string]DeviceKey{}
		for d := range devices {
			benchKeys[fmt.Sprintf("14755-%02d", d)] = DeviceKey{PublicKey: keys[d].Public().(ed25519.PublicKey), Station: "14755"}
		}
	})
	return benchLog
}

var benchKeys map[string]DeviceKey

// benchForms: the benchmarks' chain is in the second hash form, that of a
// file created since it exists.
var benchForms = broadcast.HashForms{AsRunFrom: 1, OplogFrom: 1}

// BenchmarkVerifyParallel verifies a million signed entries (about 440-byte
// payloads) from memory, as GET /audit/verify does: chain in order,
// signatures on all cores. x-allcores is entries/s over the rate at which
// every core checks bare signatures of the same bodies, measured just before
// and after (the goal of docs/benchmarks.md: at least 0.8); x-allcores-cpu is the same
// ratio in CPU time, which other processes on a shared machine do not skew
// as they skew wall time, and busy-cores how many cores the verification
// kept busy. storage's BenchmarkVerifyLogs measures the same from a store.
func BenchmarkVerifyParallel(b *testing.B) {
	log := benchEntriesLog(b)
	_, env, err := broadcast.DecodeEvent(log[0].Payload)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d entries, payload %d bytes, %d cores", len(log), len(log[0].Payload), runtime.GOMAXPROCS(0))
	for _, workers := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			var (
				wall            time.Duration
				cpu             float64
				refRate, refCPU float64 // summed over the iterations
			)
			for b.Loop() {
				b.StopTimer()
				before, beforeCPU := audittest.AllCoresVerifyRate(env.Body, time.Second)
				b.StartTimer()
				start, startCPU := time.Now(), audittest.BusyCPU()
				pv := NewParallelVerifier(func(d string) (DeviceKey, bool) { k, ok := benchKeys[d]; return k, ok }, workers)
				pv.SetHashForms(benchForms)
				for _, e := range log {
					pv.AsRun(e)
				}
				last := log[len(log)-1]
				r := pv.Result(last.Hash, last.Seq, broadcast.Hash{}, 0)
				wall, cpu = wall+time.Since(start), cpu+audittest.BusyCPU()-startCPU
				b.StopTimer()
				after, afterCPU := audittest.AllCoresVerifyRate(env.Body, time.Second)
				b.StartTimer()
				if !r.OK {
					b.Fatalf("%s", problemsOf(r))
				}
				refRate, refCPU = refRate+(before+after)/2, refCPU+(beforeCPU+afterCPU)/2
			}
			n := float64(b.N * len(log))
			rate := n / wall.Seconds()
			b.ReportMetric(rate, "entries/s")
			b.ReportMetric(refRate/float64(b.N), "allcores-verifies/s")
			b.ReportMetric(rate/(refRate/float64(b.N)), "x-allcores")
			// The CPU each entry costs, the GC's included.
			if cpu > 0 && refCPU > 0 {
				perEntry := cpu / n * 1e6
				b.ReportMetric(perEntry, "cpu-µs/entry")
				b.ReportMetric(refCPU/float64(b.N)/perEntry, "x-allcores-cpu")
				b.ReportMetric(cpu/wall.Seconds(), "busy-cores")
			}
		})
	}
}

// BenchmarkVerifyBundle verifies a bundle of 200,000 of those entries from
// a file, as `loaxa audit verify --bundle` does: gunzip, JSON lines, chain,
// signatures on all cores.
func BenchmarkVerifyBundle(b *testing.B) {
	const n = 200_000
	log := benchEntriesLog(b)[:n]
	l := &memLog{asrun: log, devices: map[string]broadcast.Device{}, forms: benchForms}
	for id, k := range benchKeys {
		l.devices[id] = broadcast.Device{ID: id, Station: k.Station, PublicKey: k.PublicKey}
	}
	path := filepath.Join(b.TempDir(), "bundle.tar.gz")
	out, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	p, _ := broadcast.ParsePeriod("2026-12")
	if _, err := WriteBundle(context.Background(), out, l, BundleSpec{Period: p, Location: ict, Now: time.Date(2027, 2, 1, 0, 0, 0, 0, ict), TempDir: b.TempDir()}); err != nil {
		b.Fatal(err)
	}
	out.Close()
	fi, _ := os.Stat(path)
	b.Logf("bundle of %d entries: %d MB", n, fi.Size()>>20)
	start := time.Now()
	for b.Loop() {
		r, err := VerifyBundleFile(path)
		if err != nil || !r.OK || r.Entries != n {
			b.Fatalf("%v %s", err, problemsOf(r))
		}
	}
	b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "entries/s")
}
