package devices

import (
	"sync"
	"testing"
)

func TestFIFO(t *testing.T) {
	t.Parallel()
	q := newFIFO[int]()
	stop := make(chan struct{})
	const n = 5000
	for i := range n {
		q.push(i)
	}
	// Several consumers, as the online workers: every item comes out once,
	// and a consumer that takes one wakes the next for the rest.
	var mu sync.Mutex
	got := map[int]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				v, ok := q.pop(stop)
				if !ok {
					return
				}
				mu.Lock()
				got[v]++
				done := len(got) == n
				mu.Unlock()
				if done {
					close(stop)
					return
				}
			}
		})
	}
	wg.Wait()
	for i := range n {
		if got[i] != 1 {
			t.Fatalf("item %d came out %d times", i, got[i])
		}
	}
	if _, ok := q.pop(stop); ok {
		t.Error("pop after stop returned an item")
	}
}

func TestFIFOOrder(t *testing.T) {
	t.Parallel()
	q := newFIFO[int]()
	stop := make(chan struct{})
	// Interleave pushes and pops past the compaction threshold.
	next := 0
	for i := range 3000 {
		q.push(i)
		if i%3 == 0 {
			v, _ := q.pop(stop)
			if v != next {
				t.Fatalf("popped %d, want %d", v, next)
			}
			next++
		}
	}
	for next < 3000 {
		v, _ := q.pop(stop)
		if v != next {
			t.Fatalf("popped %d, want %d", v, next)
		}
		next++
	}
}

func TestTopics(t *testing.T) {
	t.Parallel()
	tp, err := newTopics("")
	if err != nil || tp.root != DefaultTopicRoot {
		t.Fatalf("default root: %v %q", err, tp.root)
	}
	for topic, want := range map[string]string{
		"loaxa/v1/dev/14755-03/events":   "14755-03 events",
		"loaxa/v1/dev/14755-03/status":   "14755-03 status",
		"loaxa/v1/dev/14755-03/cmd":      "14755-03 cmd",
		"loaxa/v1/dev/14755-03/schedule": "14755-03 schedule",
		"loaxa/v1/dev/14755-03/other":    "",
		"loaxa/v1/dev/bad id/events":     "",
		"loaxa/v1/dev/a/b/events":        "",
		"loaxa/v2/dev/a/events":          "",
		"loaxa/v1/dev//events":           "",
	} {
		id, kind, ok := tp.parse(topic)
		got := ""
		if ok {
			got = id + " " + kind
		}
		if got != want {
			t.Errorf("parse(%q) = %q, want %q", topic, got, want)
		}
	}
}
