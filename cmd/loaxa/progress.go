package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progress reports a transfer on stderr. On a terminal it redraws one line
// in place, at most every redrawEvery; anywhere else (a log file, CI) it
// writes one plain line at the end, because a bar redrawn with carriage
// returns is noise in a file.
type progress struct {
	w     io.Writer
	tty   bool
	label string
	total int64 // -1: unknown (a streamed download)
	now   func() time.Time
	// touch is called on every chunk, to keep the transfer's idle
	// watchdog from firing while bytes move.
	touch func()

	mu      sync.Mutex
	n       int64
	start   time.Time
	drawn   time.Time
	lastLen int
}

const redrawEvery = 100 * time.Millisecond

func newProgress(w io.Writer, tty bool, label string, total int64, touch func()) *progress {
	p := &progress{w: w, tty: tty, label: label, total: total, now: time.Now, touch: touch}
	p.start = p.now()
	return p
}

// reader counts what passes through r.
func (p *progress) reader(r io.Reader) io.Reader { return &progressReader{r: r, p: p} }

type progressReader struct {
	r io.Reader
	p *progress
}

func (pr *progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	if n > 0 {
		pr.p.add(int64(n))
	}
	return n, err
}

func (p *progress) add(n int64) {
	if p.touch != nil {
		p.touch()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += n
	if !p.tty {
		return
	}
	if now := p.now(); now.Sub(p.drawn) >= redrawEvery {
		p.drawn = now
		p.draw(now, false)
	}
}

// finish ends the report: the last state of the bar and a newline on a
// terminal, a summary line elsewhere; after a failure, only what keeps the
// error message that follows on a line of its own.
func (p *progress) finish(ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	switch {
	case p.tty && ok:
		p.draw(now, true)
		fmt.Fprintln(p.w)
	case p.tty:
		if p.lastLen > 0 {
			fmt.Fprintln(p.w)
		}
	case ok:
		el := now.Sub(p.start)
		fmt.Fprintf(p.w, "%s: %s in %s (%s/s)\n", p.label, size(p.n), elapsed(el), size(rate(p.n, el)))
	}
}

const barWidth = 24

// draw renders "label [=====>     ]  42%  1.2 MiB / 2.9 MiB  640.0 KiB/s".
// It pads with spaces over the previous line rather than clearing it with
// an escape sequence, which old Windows consoles print as text.
func (p *progress) draw(now time.Time, done bool) {
	var b strings.Builder
	b.WriteString(p.label)
	el := now.Sub(p.start)
	if p.total > 0 {
		frac := min(float64(p.n)/float64(p.total), 1)
		fill := int(frac * barWidth)
		bar := strings.Repeat("=", fill)
		if fill < barWidth {
			bar += ">" + strings.Repeat(" ", barWidth-fill-1)
		}
		fmt.Fprintf(&b, "  [%s] %3.0f%%  %s / %s", bar, frac*100, size(p.n), size(p.total))
	} else {
		fmt.Fprintf(&b, "  %s", size(p.n))
	}
	if el > 0 {
		fmt.Fprintf(&b, "  %s/s", size(rate(p.n, el)))
	}
	if done {
		fmt.Fprintf(&b, "  %s", elapsed(el))
	}
	line := b.String()
	pad := max(p.lastLen-len([]rune(line)), 0)
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
	p.lastLen = len([]rune(line))
}

func rate(n int64, d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(float64(n) / d.Seconds())
}

// elapsed rounds a transfer's time to what a person reads: milliseconds
// under a second, tenths under a minute, seconds beyond.
func elapsed(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond)
	case d < time.Minute:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}
