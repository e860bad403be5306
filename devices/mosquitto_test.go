package devices

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/devices/mosquittotest"
)

// startMosquitto runs the real Mosquitto with the files WriteMosquittoConfig
// wrote, on a free loopback port, and returns its URL and the daemon's
// credentials.
func startMosquitto(t *testing.T, fx *fixture) (url, user, pass string) {
	t.Helper()
	mosquittotest.Binary(t)
	var devs []broadcast.Device
	for _, st := range []string{"38001", "38002"} {
		ds, err := fx.store.Devices(st)
		if err != nil {
			t.Fatal(err)
		}
		devs = append(devs, ds...)
	}
	// Devices() returns what the store holds: the secret hashes must be
	// there for the password file.
	for _, d := range devs {
		if d.SecretHash == "" {
			t.Fatalf("device %s comes back from the store without its secret hash", d.ID)
		}
	}
	dir := t.TempDir()
	user, pass = "loaxad", broadcast.NewSecret()
	if err := WriteMosquittoConfig(dir, devs, user, pass, testRoot); err != nil {
		t.Fatal(err)
	}

	// The generated file listens on 1883 on every interface; the test wants
	// a free loopback port.
	addr := mosquittotest.Start(t, dir, mosquittotest.FreePort(t))
	return "tcp://" + addr, user, pass
}

func TestMosquittoAuthAndACL(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	url, user, pass := startMosquitto(t, fx)
	if _, err := connectDevice(t, url, fx.a, deviceConnOpts{}); err != nil {
		t.Fatalf("a registered device with its secret: %v", err)
	}
	for _, tc := range []struct {
		name string
		d    testDevice
		o    deviceConnOpts
	}{
		{"wrong secret", fx.b, deviceConnOpts{secret: fx.a.Secret}},
		{"disabled device", fx.c, deviceConnOpts{}},
		{"daemon's user with a wrong password", fx.b, deviceConnOpts{user: user, clientID: "x"}},
	} {
		if _, err := connectDevice(t, url, tc.d, tc.o); err == nil {
			t.Errorf("%s: connected, want refused", tc.name)
		}
	}
	testDeviceACL(t, fx, url, user, pass, false)
}

func TestHubMosquitto(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	url, user, pass := startMosquitto(t, fx)
	testHubEndToEnd(t, fx, url, user, pass)
}

func TestWriteMosquittoConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	on := broadcast.Device{ID: "38001-01", Station: "38001", SecretHash: broadcast.HashSecret("s1")}
	off := broadcast.Device{ID: "38001-02", Station: "38001", SecretHash: broadcast.HashSecret("s2"), Disabled: true}
	if err := WriteMosquittoConfig(dir, []broadcast.Device{on, off}, "loaxad", "pw", ""); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	passwd, acl, conf := read(MosquittoPasswd), read(MosquittoACL), read(MosquittoConf)
	if !strings.Contains(passwd, on.ID+":"+on.SecretHash+"\n") || strings.Contains(passwd, off.ID) {
		t.Errorf("passwd:\n%s", passwd)
	}
	for _, line := range strings.Split(strings.TrimSpace(passwd), "\n") {
		if u, h, _ := strings.Cut(line, ":"); u == "loaxad" && !broadcast.VerifySecret(h, "pw") {
			t.Errorf("daemon's hash does not verify: %s", line)
		}
	}
	for _, want := range []string{
		"user loaxad\ntopic readwrite loaxa/v1/#\n",
		"user 38001-01\ntopic write loaxa/v1/dev/38001-01/events\ntopic write loaxa/v1/dev/38001-01/status\n" +
			"topic read loaxa/v1/dev/38001-01/schedule\ntopic read loaxa/v1/dev/38001-01/cmd\n",
	} {
		if !strings.Contains(acl, want) {
			t.Errorf("acl lacks %q:\n%s", want, acl)
		}
	}
	if strings.Contains(acl, off.ID) || strings.Contains(acl, "pattern") {
		t.Errorf("acl:\n%s", acl)
	}
	for _, want := range []string{"allow_anonymous false", "password_file " + filepath.Join(dir, MosquittoPasswd),
		"acl_file " + filepath.Join(dir, MosquittoACL), "max_queued_messages 0", "max_inflight_messages 0", "max_queued_bytes 0", "persistence false"} {
		if !strings.Contains(conf, want+"\n") {
			t.Errorf("mosquitto.conf lacks %q", want)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, MosquittoPasswd)); err != nil || fi.Mode().Perm()&0o007 != 0 {
		t.Errorf("passwd is readable by others: %v %v", fi.Mode(), err)
	}

	for name, call := range map[string]func() error{
		"device named like the daemon": func() error {
			return WriteMosquittoConfig(dir, []broadcast.Device{{ID: "loaxad", SecretHash: on.SecretHash}}, "loaxad", "pw", "")
		},
		"bad secret hash": func() error {
			return WriteMosquittoConfig(dir, []broadcast.Device{{ID: "x", SecretHash: "plain"}}, "loaxad", "pw", "")
		},
		"daemon user with a colon": func() error { return WriteMosquittoConfig(dir, nil, "a:b", "pw", "") },
		"no daemon password":       func() error { return WriteMosquittoConfig(dir, nil, "loaxad", "", "") },
		"root with a space":        func() error { return WriteMosquittoConfig(dir, nil, "loaxad", "pw", "a b") },
		"wildcard root":            func() error { return WriteMosquittoConfig(dir, nil, "loaxad", "pw", "a/#") },
	} {
		if err := call(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestWriteMosquittoAccessSkips: the daemon's writer leaves out a disabled
// device whatever its record holds, and an enabled one it cannot write (a
// device named like the daemon's user, from before such ids were refused),
// saying why, instead of failing and freezing every device's access.
func TestWriteMosquittoAccessSkips(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	on := broadcast.Device{ID: "38001-01", Station: "38001", SecretHash: broadcast.HashSecret("s1")}
	clash := broadcast.Device{ID: "loaxad", Station: "38001", SecretHash: broadcast.HashSecret("s2")}
	offClash := clash
	offClash.Disabled = true
	if err := WriteMosquittoConfig(dir, []broadcast.Device{on, offClash}, "loaxad", "pw", ""); err != nil {
		t.Fatalf("a disabled device named like the daemon: %v", err)
	}
	skipped, err := WriteMosquittoAccess(dir, []broadcast.Device{on, clash}, "loaxad", "pw", "")
	if err != nil || len(skipped) != 1 || !strings.Contains(skipped[0], "loaxad") {
		t.Fatalf("skipped %q, err %v; want the loaxad device skipped", skipped, err)
	}
	passwd, err := os.ReadFile(filepath.Join(dir, MosquittoPasswd))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(passwd), "loaxad:") != 1 || strings.Contains(string(passwd), clash.SecretHash) || !strings.Contains(string(passwd), on.ID+":") {
		t.Fatalf("passwd:\n%s", passwd)
	}
	// A failure leaves the previous files: conf.d cannot be made here.
	if err := os.RemoveAll(filepath.Join(dir, "conf.d")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "conf.d"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteMosquittoAccess(dir, nil, "loaxad", "pw", ""); err == nil {
		t.Fatal("no error with conf.d a file")
	}
	after, _ := os.ReadFile(filepath.Join(dir, MosquittoPasswd))
	if string(after) != string(passwd) {
		t.Fatalf("a failed rewrite changed passwd:\n%s", after)
	}
}
