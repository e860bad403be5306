package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/loaxa/loaxa/configs"
	"github.com/loaxa/loaxa/devices"
	"github.com/loaxa/loaxa/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// mosquittoSync keeps an external Mosquitto's password file and ACL in
// step with the registered devices (mqtt.mosquitto_dir): without it, adding
// a device meant stopping the daemon to run `loaxad mosquitto-config`, since
// that opens the store the daemon holds.
type mosquittoSync struct {
	cfg   configs.MQTT
	store *storage.Store
	log   *slog.Logger
	mu    sync.Mutex // one rewrite and reload at a time, in order

	failures prometheus.Counter // rewrites that failed: the previous files stay
	skipped  prometheus.Gauge   // enabled devices left out of the last files
}

func newMosquittoSync(cfg configs.MQTT, store *storage.Store, log *slog.Logger, reg prometheus.Registerer) (*mosquittoSync, error) {
	m := &mosquittoSync{cfg: cfg, store: store, log: log,
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaxa_mosquitto_sync_failures_total",
			Help: "Rewrites of Mosquitto's password file and ACL (mqtt.mosquitto_dir) that failed; the previous files stayed.",
		}),
		skipped: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "loaxa_mosquitto_devices_skipped",
			Help: "Enabled devices left out of Mosquitto's password file at the last rewrite because their record could not be written (they cannot connect).",
		}),
	}
	for _, c := range []prometheus.Collector{m.failures, m.skipped} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("mosquitto sync metrics: %w", err)
		}
	}
	return m, nil
}

// sync is write that never fails the caller: the daemon must start, and go
// on adding and disabling devices, even when the files cannot follow (a
// full disk, a device record that cannot be written). It logs and counts
// the failure; Mosquitto keeps the previous files.
func (m *mosquittoSync) sync(ctx context.Context) {
	switch err := m.write(ctx); {
	case errors.Is(err, errReload):
		// Mosquitto may not be running yet; it reads the files when it starts.
		m.log.Warn("wrote Mosquitto's password file and ACL, but the reload failed", "dir", m.cfg.MosquittoDir, "err", err)
	case err != nil:
		m.failures.Inc()
		m.log.Error("Mosquitto's password file and ACL did not follow the devices; the previous files stay", "dir", m.cfg.MosquittoDir, "err", err)
	}
}

// reloadTimeout bounds the reload command: a hung systemctl must not hold
// up the next device change for ever.
const reloadTimeout = 30 * time.Second

// write rewrites the files from the store, then runs the reload command.
// A reload that fails is errReload: the files are right, and Mosquitto
// reads them when it (re)starts.
func (m *mosquittoSync) write(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	devs, err := m.store.Devices("")
	if err != nil {
		return fmt.Errorf("mosquitto files: %w", err)
	}
	skipped, err := devices.WriteMosquittoAccess(m.cfg.MosquittoDir, devs, m.cfg.Username, m.cfg.Password, m.cfg.TopicRoot)
	m.skipped.Set(float64(len(skipped)))
	for _, why := range skipped {
		m.log.Error("a device was left out of Mosquitto's password file: it cannot connect until its record is fixed or it is disabled", "reason", why)
	}
	if err != nil {
		return err
	}
	if len(m.cfg.MosquittoReload) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, m.cfg.MosquittoReload[0], m.cfg.MosquittoReload[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w (%s): %w: %s", errReload, strings.Join(m.cfg.MosquittoReload, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

var errReload = errors.New("reload Mosquitto")
