package devices

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/loaxa/loaxa/broadcast"
)

// Files WriteMosquittoConfig writes in its directory.
const (
	MosquittoConf   = "mosquitto.conf"
	MosquittoPasswd = "passwd"
	MosquittoACL    = "acl"
)

// mosquittoMaxPacket bounds every packet, as the embedded broker does: a
// snapshot is the largest message of the protocol.
const mosquittoMaxPacket = broadcast.MaxSnapshotPayload + 64<<10

// WriteMosquittoConfig writes, in dir, a Mosquitto 2.0 configuration that
// enforces what the embedded broker does: a password file with every enabled
// device (its stored secret hash is already in Mosquitto's $7$ format) and
// the daemon's user, an ACL that confines each device to its own four topics
// and gives the daemon the whole root, and mosquitto.conf. Disabled devices
// are left out, so they cannot connect. Each file is replaced atomically;
// after a change, SIGHUP makes Mosquitto reload the password file and ACL.
//
// Mosquitto checks topics, not client ids: unlike the embedded broker it
// cannot hold a device to client id dev-<id>.
func WriteMosquittoConfig(dir string, devices []broadcast.Device, daemonUser, daemonPassword string, topicRoot string) error {
	_, err := writeMosquitto(dir, devices, daemonUser, daemonPassword, topicRoot, true)
	return err
}

// WriteMosquittoAccess is WriteMosquittoConfig for a running deployment:
// it rewrites the password file and the ACL, and writes mosquitto.conf only
// if there is none, so that an administrator's edits of it stay. The daemon
// calls it whenever devices change (mqtt.mosquitto_dir).
//
// Unlike WriteMosquittoConfig it does not give up on a device it cannot
// write (an id that is the daemon's user, a secret hash not in $7$ format):
// it leaves that device out, so that it cannot connect, and returns why in
// skipped; one bad record must not freeze every other device's access. On
// an error the previous files stay as they were.
func WriteMosquittoAccess(dir string, devices []broadcast.Device, daemonUser, daemonPassword string, topicRoot string) (skipped []string, err error) {
	return writeMosquitto(dir, devices, daemonUser, daemonPassword, topicRoot, false)
}

func writeMosquitto(dir string, devices []broadcast.Device, daemonUser, daemonPassword string, topicRoot string, withConf bool) (skipped []string, err error) {
	t, err := newTopics(topicRoot)
	if err != nil {
		return nil, fmt.Errorf("mosquitto config: %w", err)
	}
	if strings.ContainsAny(t.root, " \t\r\n%") {
		// A space would end the topic in an ACL line; % starts a pattern.
		return nil, fmt.Errorf("mosquitto config: topic root %q has a space or %%", t.root)
	}
	if !validUser(daemonUser) || daemonPassword == "" {
		return nil, errors.New("mosquitto config: the daemon's user must be non-empty without ':' or spaces, and have a password")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("mosquitto config: %w", err)
	}
	enabled := make([]broadcast.Device, 0, len(devices))
	for _, d := range devices {
		// A disabled device is left out whatever its record holds: it
		// must not connect, and nothing of it is written.
		if d.Disabled {
			continue
		}
		var why string
		switch {
		case !broadcast.ValidID(d.ID):
			why = fmt.Sprintf("device id %q is not a valid id", d.ID)
		case d.ID == daemonUser:
			why = fmt.Sprintf("device %q has the daemon's user name", d.ID)
		case !strings.HasPrefix(d.SecretHash, "$7$") || strings.ContainsAny(d.SecretHash, " \t\r\n:"):
			why = fmt.Sprintf("device %s has no secret hash in $7$ format", d.ID)
		}
		if why != "" {
			if withConf {
				return nil, errors.New("mosquitto config: " + why)
			}
			skipped = append(skipped, why)
			continue
		}
		enabled = append(enabled, d)
	}
	slices.SortFunc(enabled, func(a, b broadcast.Device) int { return strings.Compare(a.ID, b.ID) })

	var passwd, acl, conf bytes.Buffer
	fmt.Fprintf(&passwd, "%s:%s\n", daemonUser, broadcast.HashSecret(daemonPassword))
	for _, d := range enabled {
		fmt.Fprintf(&passwd, "%s:%s\n", d.ID, d.SecretHash)
	}

	fmt.Fprintf(&acl, "# Written by loaxad; it is rewritten whenever devices change.\n\n")
	fmt.Fprintf(&acl, "user %s\ntopic readwrite %s/#\n", daemonUser, t.root)
	for _, d := range enabled {
		// Exact topics, never patterns: a device must not reach another's
		// topics, and an exact ACL entry does not match a wildcard filter,
		// so a device cannot subscribe with one either.
		fmt.Fprintf(&acl, "\nuser %s\n", d.ID)
		fmt.Fprintf(&acl, "topic write %s\n", t.device(d.ID, kindEvents))
		fmt.Fprintf(&acl, "topic write %s\n", t.device(d.ID, kindStatus))
		fmt.Fprintf(&acl, "topic read %s\n", t.device(d.ID, kindSchedule))
		fmt.Fprintf(&acl, "topic read %s\n", t.device(d.ID, kindCmd))
	}

	fmt.Fprintf(&conf, `# Written by loaxad for the station protocol under %[1]s.
# Add TLS listeners and the like in conf.d/, not here: this file is rewritten.
per_listener_settings false
listener 1883
allow_anonymous false
allow_zero_length_clientid false
password_file %[2]s
acl_file %[3]s

# The broker is not trusted with durability: devices keep every event in an
# outbox until the daemon's receipt, and the daemon re-publishes a device's
# schedule whenever it comes online. Losing the broker's state in a restart
# therefore loses nothing, and persistence would only add disk writes.
persistence false

# Mosquitto's limits are global, not per client. With the defaults (20 in
# flight, 1000 queued) it silently drops QoS 1 messages to a client that
# falls behind, and the daemon's session is the one that does: thousands of
# devices acknowledge the same broadcast in the same second, and events queue
# for the daemon while it restarts. 0 means no limit. Devices receive little
# (a schedule, receipts, a few commands), so no limit costs nothing there.
max_inflight_messages 0
max_queued_messages 0
max_queued_bytes 0

# A schedule snapshot is the largest message of the protocol.
max_packet_size %[4]d

include_dir %[5]s
`, t.root, filepath.Join(abs, MosquittoPasswd), filepath.Join(abs, MosquittoACL), mosquittoMaxPacket, filepath.Join(abs, "conf.d"))

	if err := os.MkdirAll(filepath.Join(abs, "conf.d"), 0o755); err != nil {
		return skipped, fmt.Errorf("mosquitto config: %w", err)
	}
	if _, err := os.Stat(filepath.Join(abs, MosquittoConf)); err == nil && !withConf {
		conf.Reset()
	}
	// The password file holds hashes, not secrets, but no one else needs
	// to read it; Mosquitto warns about world-readable ones.
	// Every file is written aside first and renamed only when all are: a
	// failure halfway (a full disk) leaves the previous files, not a new
	// password file with an old ACL.
	var files []pendingFile
	defer func() {
		for _, f := range files {
			_ = os.Remove(f.tmp) // a no-op after the rename
		}
	}()
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{MosquittoPasswd, passwd.Bytes(), 0o640},
		{MosquittoACL, acl.Bytes(), 0o640},
		{MosquittoConf, conf.Bytes(), 0o644},
	} {
		if len(f.data) == 0 {
			continue // mosquitto.conf, kept as it is
		}
		tmp, err := writeTemp(filepath.Join(abs, f.name), f.data, f.mode)
		if err != nil {
			return skipped, fmt.Errorf("mosquitto config: %w", err)
		}
		files = append(files, pendingFile{tmp: tmp, name: filepath.Join(abs, f.name)})
	}
	for _, f := range files {
		if err := os.Rename(f.tmp, f.name); err != nil {
			return skipped, fmt.Errorf("mosquitto config: write %s: %w", f.name, err)
		}
	}
	return skipped, nil
}

type pendingFile struct{ tmp, name string }

func validUser(u string) bool {
	return u != "" && !strings.ContainsAny(u, ": \t\r\n#+/")
}

// writeTemp writes data to a synced temporary file beside name, to be
// renamed over it, so that a reload never sees half a file.
func writeTemp(name string, data []byte, mode os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	fail := func(err error) (string, error) {
		_ = f.Close()
		_ = os.Remove(tmp)
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	return tmp, nil
}
