package daemon

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/devices/mosquittotest"
)

// TestMosquittoFollowsDevices: with mqtt.mosquitto_dir, the daemon keeps
// Mosquitto's password file and ACL and reloads it, so that a device added
// through the API gets in at once and a disabled one is kept out, with
// neither the daemon nor Mosquitto restarted. Mosquitto starts from the
// files the daemon wrote when it started.
func TestMosquittoFollowsDevices(t *testing.T) {
	mosquittotest.Binary(t)
	cfg := testConfig(t)
	port := mosquittotest.FreePort(t)
	dir := filepath.Join(t.TempDir(), "mosquitto")
	pidFile := filepath.Join(t.TempDir(), "mosquitto.pid")
	cfg.MQTT.Embedded.Enabled = false
	cfg.MQTT.URL = fmt.Sprintf("tcp://127.0.0.1:%d", port)
	cfg.MQTT.Username, cfg.MQTT.Password = "loaxad", broadcast.NewSecret()
	cfg.MQTT.MosquittoDir = dir
	cfg.MQTT.MosquittoReload = []string{"sh", "-c", `kill -HUP "$(cat "$0")"`, pidFile}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := Start(ctx, Options{Config: cfg, Logger: testLogger(t), Clock: newShiftedClock(time.Date(2026, 12, 10, 8, 0, 0, 0, time.FixedZone("ICT", 7*3600)))})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, pid := mosquittotest.StartProcess(t, dir, port)
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	c := client{t: t, base: "http://" + d.HTTPAddr()}
	admin, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(admin))

	// connect reports whether a device gets into Mosquitto with secret.
	connect := func(device, secret string) error { return connectDevice(cfg.MQTT.URL, device, secret) }
	// Mosquitto applies a reload between two connections; wait for it.
	eventually := func(what string, ok func() bool) {
		t.Helper()
		awaitFor(t, 10*time.Second, what, ok)
	}

	var dev struct{ ID, Secret string }
	c.json("POST", "/api/v1/stations/14755/devices", token, map[string]string{"id": "14755-01"}, &dev, 201)
	eventually("the new device to get in", func() bool { return connect(dev.ID, dev.Secret) == nil })
	if err := connect(dev.ID, "not its secret"); err == nil {
		t.Fatal("a wrong secret got in")
	}
	c.json("DELETE", "/api/v1/devices/"+dev.ID, token, nil, nil, 200)
	eventually("the disabled device to be kept out", func() bool { return connect(dev.ID, dev.Secret) != nil })

	// The daemon's own session, on the same files, gets in too.
	eventually("the daemon to be connected", func() bool {
		resp, err := http.Get(c.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	acl, err := os.ReadFile(filepath.Join(dir, "acl"))
	if err != nil || strings.Contains(string(acl), "14755-01") {
		t.Fatalf("the ACL after the device was disabled: %v\n%s", err, acl)
	}
}

// connectDevice connects to broker as a device would and leaves again: nil
// if the broker let it in.
func connectDevice(broker, device, secret string) error {
	opts := mqtt.NewClientOptions().AddBroker(broker).SetClientID("dev-" + device).
		SetUsername(device).SetPassword(secret).SetConnectTimeout(5 * time.Second).SetAutoReconnect(false)
	cl := mqtt.NewClient(opts)
	tok := cl.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("connect as %s: timed out", device)
	}
	if err := tok.Error(); err != nil {
		return err
	}
	cl.Disconnect(50)
	return nil
}
