package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Player sounds one audio file on the loudspeakers. Play returns when the
// audio has ended (nil), when it failed (an error) or when ctx is cancelled
// (ctx's error): the agent cancels to preempt or stop an airing.
type Player interface {
	Play(ctx context.Context, file string, duration time.Duration) error
}

// NullPlayer plays nothing: it waits the audio's duration on its clock. It
// is the simulator's player, and a receiver's without an amplifier.
type NullPlayer struct {
	Clock Clock
}

// Play waits duration, or until ctx is done.
func (p NullPlayer) Play(ctx context.Context, _ string, duration time.Duration) error {
	if duration <= 0 {
		return ctx.Err()
	}
	select {
	case <-p.Clock.After(duration):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CommandPlayer runs an external player, e.g. ["mpv", "--no-video",
// "--volume={volume}", "{file}"].
type CommandPlayer struct {
	Argv   []string
	Volume int // 1-100 for {volume}; 0 substitutes 100
	// Grace is how long past the audio's duration the player may run before
	// it is killed as hung (default 30 s, at least a tenth of the duration):
	// a hung player would otherwise silence every later airing.
	Grace time.Duration
}

// Play runs the command and waits for it. On cancel the player gets SIGTERM,
// then SIGKILL after two seconds. (A player that forks children of its own
// should be exec'd by its wrapper script, or those children outlive it.)
func (p CommandPlayer) Play(ctx context.Context, file string, duration time.Duration) error {
	if len(p.Argv) == 0 {
		return errors.New("player: no command")
	}
	vol := p.Volume
	if vol <= 0 {
		vol = 100
	}
	argv := make([]string, len(p.Argv))
	for i, a := range p.Argv {
		a = strings.ReplaceAll(a, "{file}", file)
		argv[i] = strings.ReplaceAll(a, "{volume}", strconv.Itoa(vol))
	}
	if duration > 0 {
		grace := p.Grace
		if grace <= 0 {
			grace = max(30*time.Second, duration/10)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, duration+grace, errPlayerOverran)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 2 * time.Second
	var stderr tailBuffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if cause := context.Cause(ctx); cause != nil {
		if errors.Is(cause, errPlayerOverran) {
			return fmt.Errorf("player %s: %w", argv[0], cause)
		}
		return cause
	}
	if err != nil {
		return fmt.Errorf("player %s: %w: %s", argv[0], err, bytes.TrimSpace(stderr.buf))
	}
	return nil
}

var errPlayerOverran = errors.New("still running long after the audio's duration; killed")

// tailBuffer keeps the last KiB of a player's stderr for the error message.
type tailBuffer struct{ buf []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	const keep = 1 << 10
	t.buf = append(t.buf, p...)
	if len(t.buf) > keep {
		t.buf = t.buf[len(t.buf)-keep:]
	}
	return len(p), nil
}

// newPlayer makes the player a config names.
func newPlayer(cfg Config, clock Clock) Player {
	if len(cfg.Player) == 0 || cfg.Player[0] == "null" {
		return NullPlayer{Clock: clock}
	}
	return CommandPlayer{Argv: cfg.Player, Volume: cfg.Volume}
}
