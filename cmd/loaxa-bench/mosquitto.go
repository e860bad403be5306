package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/devices"
)

// findMosquitto returns the Mosquitto binary: the one named, else where
// Debian and Homebrew put it, else the one on PATH.
func findMosquitto(named string) (string, error) {
	if named != "" {
		return named, nil
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("mosquitto")
	if err != nil {
		return "", errors.New("mosquitto is not installed (apt-get install mosquitto), or name it with -mosquitto-bin")
	}
	return p, nil
}

// mosquittoVersion is the first line of `mosquitto -h`, e.g. "mosquitto
// version 2.0.11".
func mosquittoVersion(bin string) string {
	out, _ := exec.Command(bin, "-h").CombinedOutput() // -h exits 3
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

// mosquitto is a Mosquitto process run with the files the daemon writes
// for it, as devices/mosquittotest does for the tests.
type mosquitto struct {
	cmd    *exec.Cmd
	addr   string
	out    *lockedBuffer
	exited chan struct{}
}

// startMosquitto writes the configuration (devices.WriteMosquittoConfig:
// password file, ACL, mosquitto.conf) into dir, moves its listener to a free
// loopback port and starts Mosquitto on it.
func startMosquitto(bin, dir string, devs []broadcast.Device, user, password, topicRoot string) (*mosquitto, error) {
	if err := devices.WriteMosquittoConfig(dir, devs, user, password, topicRoot); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, devices.MosquittoConf)
	b, err := os.ReadFile(conf)
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(b, []byte("\nlistener 1883\n")) {
		return nil, fmt.Errorf("%s has no default listener", conf)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	b = bytes.Replace(b, []byte("\nlistener 1883\n"), fmt.Appendf(nil, "\nlistener %d 127.0.0.1\n", port), 1)
	if os.Geteuid() == 0 {
		// As root Mosquitto drops to its own user, which cannot read
		// files in our private temporary directory.
		b = append(b, "user root\n"...)
	}
	if err := os.WriteFile(conf, b, 0o644); err != nil {
		return nil, err
	}
	m := &mosquitto{addr: fmt.Sprintf("127.0.0.1:%d", port), out: &lockedBuffer{}, exited: make(chan struct{})}
	m.cmd = exec.Command(bin, "-c", conf)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	m.cmd.SysProcAttr = childAttr()
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start mosquitto: %w", err)
	}
	go func() { _ = m.cmd.Wait(); close(m.exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", m.addr, time.Second)
		if err == nil {
			_ = c.Close()
			return m, nil
		}
		select {
		case <-m.exited:
			return nil, fmt.Errorf("mosquitto exited:\n%s", m.out)
		default:
		}
		if time.Now().After(deadline) {
			m.stop()
			return nil, fmt.Errorf("mosquitto does not listen on %s:\n%s", m.addr, m.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (m *mosquitto) pid() int { return m.cmd.Process.Pid }

func (m *mosquitto) stop() {
	_ = m.cmd.Process.Kill()
	<-m.exited
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
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
