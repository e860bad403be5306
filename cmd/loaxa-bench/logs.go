package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
)

// logEcho is how many records of one message reach stderr; the rest are
// only counted.
const logEcho = 3

// quietLog passes the daemon's and the broker's warnings and errors to
// stderr, each message at most logEcho times, and counts them all for the
// report: a broker that drops 700 events would otherwise print 700 lines,
// and a reader of the table would never know.
type quietLog struct {
	slog.Handler
	*logCounts
}

type logCounts struct {
	mu     sync.Mutex
	counts map[string]int
	order  []string
}

func newQuietLog(h slog.Handler) quietLog {
	return quietLog{Handler: h, logCounts: &logCounts{counts: map[string]int{}}}
}

func (q quietLog) Handle(ctx context.Context, r slog.Record) error {
	q.mu.Lock()
	key := r.Level.String() + " " + r.Message
	if q.counts[key] == 0 {
		q.order = append(q.order, key)
	}
	q.counts[key]++
	n := q.counts[key]
	q.mu.Unlock()
	if n > logEcho {
		return nil
	}
	return q.Handler.Handle(ctx, r)
}

func (q quietLog) WithAttrs(as []slog.Attr) slog.Handler {
	return quietLog{Handler: q.Handler.WithAttrs(as), logCounts: q.logCounts}
}

func (q quietLog) WithGroup(name string) slog.Handler {
	return quietLog{Handler: q.Handler.WithGroup(name), logCounts: q.logCounts}
}

// summary is one line per message logged, most frequent first.
func (c *logCounts) summary() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := slices.Clone(c.order)
	slices.SortStableFunc(keys, func(a, b string) int { return c.counts[b] - c.counts[a] })
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("logged %d× %q", c.counts[k], k))
	}
	return out
}
