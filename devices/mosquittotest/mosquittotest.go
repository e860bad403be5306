// Package mosquittotest runs the real Mosquitto for integration tests, with
// the files devices.WriteMosquittoConfig writes. It is for tests only.
package mosquittotest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Binary finds mosquitto, or skips the test saying why: CI installs it, a
// developer's machine may not have it.
func Binary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("mosquitto")
	if err != nil {
		t.Skip("skipping: Mosquitto is not installed (apt-get install mosquitto); .ci/run installs it")
	}
	return p
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs Mosquitto with dir/mosquitto.conf, its default listener moved
// to 127.0.0.1:port, and returns the broker's address once it accepts
// connections. The process is killed when the test ends; its output is
// logged if the test failed.
func Start(t testing.TB, dir string, port int) string {
	t.Helper()
	addr, _ := StartProcess(t, dir, port)
	return addr
}

// StartProcess is Start that also returns Mosquitto's process id, for a
// test that signals it (SIGHUP reloads the password file and ACL).
func StartProcess(t testing.TB, dir string, port int) (string, int) {
	t.Helper()
	bin := Binary(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("\nlistener 1883\n")) {
		t.Fatalf("mosquitto.conf has no default listener:\n%s", b)
	}
	b = bytes.Replace(b, []byte("\nlistener 1883\n"), fmt.Appendf(nil, "\nlistener %d 127.0.0.1\n", port), 1)
	if os.Geteuid() == 0 {
		// As root Mosquitto drops to its own user, which cannot read the
		// files under the test's private temp dir.
		b = append(b, "user root\n"...)
	}
	if err := os.WriteFile(conf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", out.String())
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return addr, cmd.Process.Pid
		}
		select {
		case <-exited:
			t.Fatalf("mosquitto exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto does not listen on %s:\n%s", addr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockedBuffer collects a process's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
