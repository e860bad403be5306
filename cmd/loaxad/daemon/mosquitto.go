package daemon

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/loaxa/loaxa/configs"
	"github.com/loaxa/loaxa/devices"
	"github.com/loaxa/loaxa/storage"
)

// mosquittoSync keeps an external Mosquitto's password file and ACL in
// step with the registered devices (mqtt.mosquitto_dir): without it, adding
// a device meant stopping the daemon to run `loaxad mosquitto-config`, since
// that opens the store the daemon holds.
type mosquittoSync struct {
	cfg   configs.MQTT
	store *storage.Store
	mu    sync.Mutex // one rewrite and reload at a time, in order
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
	if err := devices.WriteMosquittoAccess(m.cfg.MosquittoDir, devs, m.cfg.Username, m.cfg.Password, m.cfg.TopicRoot); err != nil {
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
