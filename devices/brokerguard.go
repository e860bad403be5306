package devices

import (
	"context"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loaxa/loaxa/throttle"
)

// authGuard keeps a flood of bad CONNECTs from costing the broker its CPU
// and the daemon its disk. An address or a user name that failed too often
// must wait (throttle.Backoff: after AuthFailures failures 1 s, doubling up
// to a minute), and its CONNECTs are closed before the secret is checked
// (a PBKDF2 hash: the expensive part) and without a log line. Refusals are
// not logged one by one either: one line per interval sums them up. Tried
// with 16 workers sending bad passwords for 10 s, the broker had written
// 77,962 lines (11 MB), two per attempt.
type authGuard struct {
	rootUser string
	byAddr   *throttle.Backoff
	byUser   *throttle.Backoff
	log      *slog.Logger
	now      func() time.Time

	failures  *prometheus.CounterVec
	throttled prometheus.Counter

	mu     sync.Mutex
	period guardPeriod
}

// guardPeriod is what the next summary line reports.
type guardPeriod struct {
	refused   map[string]int // by reason
	throttled int
	addrs     map[string]struct{}
	users     map[string]struct{}
	last      [3]string // device, reason, remote of the last refusal
}

// maxDistinct bounds the addresses and users remembered for one summary.
const maxDistinct = 10_000

func newAuthGuard(rootUser string, free int, log *slog.Logger) *authGuard {
	g := &authGuard{
		rootUser: rootUser,
		byAddr:   throttle.New(free, time.Second, time.Minute),
		byUser:   throttle.New(free, time.Second, time.Minute),
		log:      log,
		now:      time.Now,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loaxa_broker_auth_failures_total",
			Help: "CONNECTs the embedded broker refused, by reason (checked, or malformed).",
		}, []string{"reason"}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaxa_broker_auth_throttled_total",
			Help: "CONNECTs closed unchecked because their address or user failed too often.",
		}),
	}
	g.reset()
	return g
}

func (g *authGuard) reset() {
	g.period = guardPeriod{refused: map[string]int{}, addrs: map[string]struct{}{}, users: map[string]struct{}{}}
}

func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// admit reports whether a CONNECT from remote as user may be checked. The
// daemon's own user always may: its password is random per process, and a
// flood under its name must not keep the daemon out.
func (g *authGuard) admit(remote, user string) bool {
	if user != "" && user == g.rootUser {
		return true
	}
	now := g.now()
	if g.byAddr.Wait(hostOf(remote), now) == 0 && (user == "" || g.byUser.Wait(user, now) == 0) {
		return true
	}
	g.throttled.Inc()
	g.mu.Lock()
	g.period.throttled++
	g.note(remote, user)
	g.mu.Unlock()
	return false
}

// refused counts a refused CONNECT. A registry that cannot answer is not
// the client's fault and makes nobody wait.
func (g *authGuard) refused(remote, user, reason string) {
	g.failures.WithLabelValues(reason).Inc()
	if reason != "registry_unavailable" {
		now := g.now()
		g.byAddr.Fail(hostOf(remote), now)
		if user != "" && user != g.rootUser {
			g.byUser.Fail(user, now)
		}
	}
	g.mu.Lock()
	g.period.refused[reason]++
	g.note(remote, user)
	g.period.last = [3]string{user, reason, remote}
	g.mu.Unlock()
}

// accepted forgets the failures of a user that got in.
func (g *authGuard) accepted(user string) { g.byUser.Reset(user) }

func (g *authGuard) note(remote, user string) {
	if len(g.period.addrs) < maxDistinct {
		g.period.addrs[hostOf(remote)] = struct{}{}
	}
	if user != "" && len(g.period.users) < maxDistinct {
		g.period.users[user] = struct{}{}
	}
}

// flush writes the summary line of what was refused since the last one,
// if anything was.
func (g *authGuard) flush() {
	g.mu.Lock()
	p := g.period
	g.reset()
	g.mu.Unlock()
	total := 0
	reasons := make([]string, 0, len(p.refused))
	for r, n := range p.refused {
		total += n
		reasons = append(reasons, r)
	}
	if total == 0 && p.throttled == 0 {
		return
	}
	sort.Strings(reasons)
	byReason := make([]any, 0, 2*len(reasons))
	for _, r := range reasons {
		byReason = append(byReason, slog.Int(r, p.refused[r]))
	}
	g.log.Warn("broker refused connections",
		"refused", total, "throttled", p.throttled, "addresses", len(p.addrs), "users", len(p.users),
		slog.Group("by_reason", byReason...),
		"last_user", p.last[0], "last_reason", p.last[1], "last_remote", p.last[2])
}

// run writes a summary every interval until ctx is done, then a last one.
func (g *authGuard) run(ctx context.Context, every time.Duration, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			g.flush()
			return
		case <-t.C:
			g.flush()
		}
	}
}
