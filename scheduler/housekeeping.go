package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/robfig/cron/v3"
)

// Housekeeping runs the daemon's recurring chores (storage checks, month
// roll-over, retention) on cron specifications. It is never the record of
// airings: a chore missed while the daemon was down is simply run at its
// next time, which is harmless for chores and would be wrong for airings.
type Housekeeping struct {
	cron   *cron.Cron
	parser cron.Parser
	log    *slog.Logger
}

// NewHousekeeping returns a runner whose specifications are read in loc.
func NewHousekeeping(loc *time.Location, log *slog.Logger) *Housekeeping {
	logger := cron.VerbosePrintfLogger(slog.NewLogLogger(log.Handler(), slog.LevelDebug))
	return &Housekeeping{
		// The default chain does not recover panics; a chore's bug must not
		// take the daemon down.
		cron:   cron.New(cron.WithLocation(loc), cron.WithChain(cron.Recover(logger)), cron.WithLogger(logger)),
		parser: cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor),
		log:    log,
	}
}

// ParseSpec parses a five-field specification (or @daily, @every 1h…) and
// refuses what robfig/cron would accept but never run: it panics on some
// malformed input (a bare CRON_TZ=) and returns the zero time from Next for
// impossible dates (0 0 30 2 *).
func (h *Housekeeping) ParseSpec(spec string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("cron spec %q: %v", spec, r)
		}
	}()
	s, err = h.parser.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("cron spec %q: %w", spec, err)
	}
	if s.Next(time.Now()).IsZero() {
		return nil, fmt.Errorf("cron spec %q never fires", spec)
	}
	return s, nil
}

// Add schedules a chore. ctx is handed to every run, so that a chore stops
// with the daemon.
func (h *Housekeeping) Add(ctx context.Context, name, spec string, chore func(context.Context) error) error {
	s, err := h.ParseSpec(spec)
	if err != nil {
		return fmt.Errorf("housekeeping %s: %w", name, err)
	}
	h.cron.Schedule(s, cron.FuncJob(func() {
		start := time.Now()
		if err := chore(ctx); err != nil {
			h.log.Error("housekeeping failed", "chore", name, "err", err)
			return
		}
		h.log.Debug("housekeeping done", "chore", name, "took", time.Since(start))
	}))
	return nil
}

// Start runs the chores in the background.
func (h *Housekeeping) Start() { h.cron.Start() }

// Stop stops scheduling and waits for running chores.
func (h *Housekeeping) Stop() { <-h.cron.Stop().Done() }
