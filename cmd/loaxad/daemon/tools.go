package daemon

import (
	"fmt"
	"io"

	"github.com/loaxa/loaxa/configs"
	"github.com/loaxa/loaxa/devices"
	"github.com/loaxa/loaxa/storage"
)

// Fsck reports records whose audio is missing and audio no record names.
func Fsck(cfg configs.Config, out io.Writer) error {
	st, err := storage.Open(cfg.DataDir, storage.Options{Policy: Policy(cfg)})
	if err != nil {
		return err
	}
	defer st.Close()
	rep, err := st.Check()
	if err != nil {
		return err
	}
	for _, b := range rep.MissingBlobs {
		fmt.Fprintf(out, "missing blob %s (a programme names it)\n", b)
	}
	for _, b := range rep.OrphanBlobs {
		fmt.Fprintf(out, "orphan blob %s (no programme names it)\n", b)
	}
	if len(rep.MissingBlobs) > 0 {
		return fmt.Errorf("%d programme audio files are missing", len(rep.MissingBlobs))
	}
	fmt.Fprintf(out, "ok: %d orphan blobs\n", len(rep.OrphanBlobs))
	return nil
}

// MosquittoConfig writes the files an external Mosquitto 2.0 needs to serve
// the registered devices and the daemon's own user.
func MosquittoConfig(cfg configs.Config, dir string, out io.Writer) error {
	if cfg.MQTT.Username == "" || cfg.MQTT.Password == "" {
		return fmt.Errorf("set mqtt.username and mqtt.password in the configuration: they become the daemon's user on Mosquitto")
	}
	st, err := storage.Open(cfg.DataDir, storage.Options{Policy: Policy(cfg)})
	if err != nil {
		return err
	}
	defer st.Close()
	devs, err := st.Devices("")
	if err != nil {
		return err
	}
	if err := devices.WriteMosquittoConfig(dir, devs, cfg.MQTT.Username, cfg.MQTT.Password, cfg.MQTT.TopicRoot); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote passwd, acl and mosquitto.conf for %d devices to %s\n", len(devs), dir)
	return nil
}
