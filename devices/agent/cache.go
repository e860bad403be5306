package agent

// The audio cache: downloads ahead of time, checked by sha256, and what is
// dropped once no item needs it.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

// reconcileCache makes the index and the audio directory agree: an index
// entry without its file is dropped; a file without an entry (the agent died
// between the rename and the commit) is kept if it hashes to its name.
func (l *loop) reconcileCache() error {
	dir := l.a.fetcher.dir
	var drop []string
	for sha, e := range l.cache {
		fi, err := os.Stat(filepath.Join(dir, sha))
		if err != nil || fi.Size() != e.Size {
			drop = append(drop, sha)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read audio cache: %w", err)
	}
	add := map[string]cacheEntry{}
	for _, de := range entries {
		name := de.Name()
		if _, ok := l.cache[name]; ok || strings.HasSuffix(name, ".part") {
			continue
		}
		path := filepath.Join(dir, name)
		if sum, n, err := hashFile(path); err == nil && sum == name {
			add[name] = cacheEntry{Size: n, Stored: l.a.clock.Now()}
		} else {
			_ = os.Remove(path)
		}
	}
	if len(drop) == 0 && len(add) == 0 {
		return nil
	}
	err = l.st.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCache)
		for _, sha := range drop {
			if err := b.Delete([]byte(sha)); err != nil {
				return err
			}
		}
		for sha, e := range add {
			if err := putJSON(b, []byte(sha), e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reconcile audio cache: %w", err)
	}
	for _, sha := range drop {
		delete(l.cache, sha)
	}
	maps.Copy(l.cache, add)
	return nil
}

func (l *loop) cached(sha string) bool {
	_, ok := l.cache[sha]
	return ok
}

// scheduleDownload starts one download at a time (one 4G link), for the
// item that starts first among those whose audio is missing.
func (l *loop) scheduleDownload(now time.Time, items []liveItem) {
	if l.fetching != "" {
		return
	}
	var next *liveItem
	for i, it := range items {
		sha := it.Audio.SHA256
		if l.has(it.Airing, markDone) || l.cached(sha) || !now.Before(it.NotAfter) || now.Before(l.retryAt[sha]) {
			continue
		}
		if next == nil || it.Start.Before(next.Start) {
			next = &items[i]
		}
	}
	if next == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.fetching, l.fetchCancel = next.Audio.SHA256, cancel
	f, ref := l.a.fetcher, next.Audio
	go func() { l.fetchDone <- f.fetch(ctx, ref) }()
	l.a.log.Debug("downloading audio", "airing", next.Airing, "sha256", ref.SHA256, "size", ref.Size)
}

func (l *loop) fetchEnded(res fetchResult) {
	l.fetching = ""
	l.fetchCancel()
	l.fetchCancel = nil
	if res.hasOff {
		l.clockOffset = res.offset
	}
	now := l.a.clock.Now()
	if res.err == nil {
		e := cacheEntry{Size: res.size, Stored: now}
		err := l.commit(nil, func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bucketCache), []byte(res.sha), e) })
		if err != nil {
			l.a.log.Error("could not index downloaded audio", "sha256", res.sha, "err", err)
			return
		}
		l.cache[res.sha] = e
		delete(l.fails, res.sha)
		delete(l.retryAt, res.sha)
		l.a.log.Info("audio ready", "sha256", res.sha, "size", res.size)
		return
	}
	l.fails[res.sha]++
	backoff := l.a.opts.RetryInterval << min(l.fails[res.sha]-1, 5)
	l.retryAt[res.sha] = now.Add(backoff)
	l.a.log.Warn("audio download failed", "sha256", res.sha, "attempt", l.fails[res.sha], "retry_in", backoff, "err", res.err)
	if !errors.Is(res.err, errChecksum) {
		return
	}
	var batch []pending
	for _, it := range l.items() {
		mark := markOf(broadcast.EventFailed, "checksum_mismatch")
		if it.Audio.SHA256 == res.sha && !l.has(it.Airing, markDone) && !l.has(it.Airing, mark) {
			batch = append(batch, l.event(it.Airing, &broadcast.Event{Event: broadcast.EventFailed, Reason: "checksum_mismatch"}))
		}
	}
	if err := l.commit(batch, nil); err != nil {
		l.a.log.Error("could not record events", "err", err)
	}
}

// dropCached forgets an audio file: the index entry first (committed), then
// the file, so that the index never names a file that is gone.
func (l *loop) dropCached(sha string) {
	err := l.st.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketCache).Delete([]byte(sha)) })
	if err != nil {
		l.a.log.Error("could not drop audio from the index", "sha256", sha, "err", err)
		return
	}
	delete(l.cache, sha)
	_ = os.Remove(l.a.fetcher.finalPath(sha))
}

// maintain drops audio that no live item needs any more, and the marks of
// airings long gone from the schedule.
func (l *loop) maintain(now time.Time) {
	items := l.items()
	needed := map[string]bool{}
	live := map[string]bool{}
	for _, it := range items {
		live[it.Airing] = true
		if !l.has(it.Airing, markDone) && now.Before(it.NotAfter) {
			needed[it.Audio.SHA256] = true
		}
	}
	if l.play != nil {
		needed[l.play.sha] = true
	}
	if l.fetching != "" {
		needed[l.fetching] = true
	}
	for sha := range l.cache {
		if !needed[sha] {
			l.dropCached(sha)
			l.a.log.Debug("dropped unused audio", "sha256", sha)
		}
	}
	if entries, err := os.ReadDir(l.a.fetcher.dir); err == nil {
		for _, de := range entries {
			if sha, ok := strings.CutSuffix(de.Name(), ".part"); ok && !needed[sha] {
				_ = os.Remove(filepath.Join(l.a.fetcher.dir, de.Name()))
			}
		}
	}
	var old []string
	for airing, marks := range l.emitted {
		if live[airing] {
			continue
		}
		var newest time.Time
		for _, m := range marks {
			if m.At.After(newest) {
				newest = m.At
			}
		}
		if now.Sub(newest) > marksKept {
			old = append(old, airing)
		}
	}
	if len(old) == 0 {
		return
	}
	err := l.st.db.Update(func(tx *bolt.Tx) error {
		for _, airing := range old {
			if err := deleteMarks(tx, airing); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		l.a.log.Error("could not prune old marks", "err", err)
		return
	}
	for _, airing := range old {
		delete(l.emitted, airing)
	}
}

func (l *loop) cacheBytes() int64 {
	var n int64
	for _, e := range l.cache {
		n += e.Size
	}
	return n
}
