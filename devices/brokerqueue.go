package devices

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Write queues, in packets. Mochi gives every client a write queue of one
// size (MaximumClientWritesPending), allocated when the connection is
// accepted and kept for its life, and drops a QoS 1 publish that finds it
// full. The two kinds of clients need very different sizes:
//
//   - a device is sent a snapshot, a receipt now and then, a command; its
//     acknowledgements and CONNACK/SUBACK bypass the queue. Mochi's default
//     of 8,192 slots is 64 KiB a connection, 628 MiB of heap at 10,047
//     devices, all of it scanned by the garbage collector. A drop is
//     recovered (a later receipt covers an earlier one, a snapshot is
//     re-published when the device comes online again), and the queue
//     fills only when the device stops reading its socket.
//   - the daemon is sent every event of every device, and a drop delays
//     evidence until the device reconnects. Its queue is sized past the
//     in-flight limit (MaximumInflight, 65,535), so that the in-flight
//     limit, not the queue, bounds what waits for it: 1 MiB, once.
const (
	DefaultDeviceQueue = 128
	DefaultDaemonQueue = 1 << 17
)

// connectPeekTimeout bounds how long an accepted connection may take to
// send its CONNECT before the broker gives up on it.
const connectPeekTimeout = 30 * time.Second

// queueListener wraps the TCP listener so that each client gets a write
// queue sized for who it is. Mochi sizes the queue from its server-wide
// capabilities in NewClient, before it reads the CONNECT, and has no
// per-client setting. So the listener reads the CONNECT first, picks the
// size from the username, and sets the capability just before mochi creates
// the client, one connection at a time: mu is held from setting it until
// mochi first reads from the connection, which it does only after
// NewClient. Mochi reads MaximumClientWritesPending nowhere else (v2.7.9;
// no inline client, no storage hook that restores clients).
type queueListener struct {
	*listeners.TCP
	guard       *authGuard
	caps        *mqtt.Capabilities
	rootUser    string
	deviceQueue int32
	daemonQueue int32
	maxConnect  int

	mu sync.Mutex // held while a client is created with caps set for it
}

// Serve wraps mochi's callback for each accepted connection.
func (l *queueListener) Serve(establish listeners.EstablishFn) {
	l.TCP.Serve(func(id string, c net.Conn) error { return l.establish(establish, id, c) })
}

func (l *queueListener) establish(establish listeners.EstablishFn, id string, c net.Conn) error {
	head, user, err := peekConnect(c, l.maxConnect, connectPeekTimeout)
	if err != nil {
		_ = c.Close()
		// Counted and summed up by the guard; mochi's listener would log
		// each one.
		l.guard.refused(c.RemoteAddr().String(), "", "malformed")
		return nil
	}
	if !l.guard.admit(c.RemoteAddr().String(), user) {
		// Closed unchecked and unlogged: the guard counts it.
		_ = c.Close()
		return nil
	}
	slots := l.deviceQueue
	if user == l.rootUser {
		// The password is checked by the auth hook afterwards; a stranger
		// claiming the daemon's name holds the large queue only until
		// refused.
		slots = l.daemonQueue
	}
	l.mu.Lock()
	l.caps.MaximumClientWritesPending = slots
	rc := &replayConn{Conn: c, head: head}
	rc.created = sync.OnceFunc(l.mu.Unlock)
	// Also released on return, should mochi ever fail before reading.
	defer rc.created()
	err = establish(id, rc)
	if errors.Is(err, packets.ErrBadUsernameOrPassword) {
		// The auth hook counted it; the guard's summary reports it.
		return nil
	}
	return err
}

// peekConnect reads the first packet of a connection, which must be a
// CONNECT, and returns its bytes (to be replayed to mochi) and username.
// Anything that is not a well-formed CONNECT is returned as read, with no
// username, for mochi to refuse in its own way.
func peekConnect(c net.Conn, maxLen int, timeout time.Duration) (head []byte, user string, err error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, "", err
	}
	// Mochi sets its own deadlines from the keep-alive once connected.
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	r := bufio.NewReaderSize(c, 512)
	first, err := r.ReadByte()
	if err != nil {
		return nil, "", err
	}
	head = append(head, first)
	var fh packets.FixedHeader
	if fh.Decode(first) != nil || fh.Type != packets.Connect {
		return drain(r, head)
	}
	// The remaining length: at most four bytes of seven bits each.
	n, shift := 0, 0
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return nil, "", err
		}
		head = append(head, b)
		n |= int(b&0x7f) << shift
		shift += 7
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return drain(r, head)
		}
	}
	if n > maxLen {
		return drain(r, head)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, "", err
	}
	head = append(head, body...)
	pk := packets.Packet{FixedHeader: fh}
	pk.FixedHeader.Remaining = n
	if pk.ConnectDecode(body) == nil && pk.Connect.UsernameFlag {
		user = string(pk.Connect.Username)
	}
	head, _, err = drain(r, head)
	return head, user, err
}

// drain appends what the reader buffered beyond the CONNECT (a client may
// send its SUBSCRIBE right behind it), so that none of it is lost.
func drain(r *bufio.Reader, head []byte) ([]byte, string, error) {
	if k := r.Buffered(); k > 0 {
		b, _ := r.Peek(k)
		head = append(head, b...)
	}
	return head, "", nil
}

// replayConn gives mochi the bytes peekConnect read before the rest of the
// connection, and tells the listener when mochi starts reading: by then it
// has created the client.
type replayConn struct {
	net.Conn
	head    []byte
	created func()
}

func (c *replayConn) Read(p []byte) (int, error) {
	c.created()
	if len(c.head) > 0 {
		n := copy(p, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
