package devices

import "sync"

// fifo is an unbounded queue with a wake-up signal. The MQTT handler pushes
// into it and must never block (paho's router would stall, and with it the
// acknowledgements of our own publishes: a deadlock). It needs no bound of
// its own: messages are acknowledged to the broker only once processed, so
// the broker's in-flight limit for the daemon's session bounds what can be
// waiting here.
type fifo[T any] struct {
	mu    sync.Mutex
	items []T
	head  int
	ready chan struct{}
}

func newFIFO[T any]() *fifo[T] { return &fifo[T]{ready: make(chan struct{}, 1)} }

func (q *fifo[T]) push(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
	q.signal()
}

func (q *fifo[T]) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop waits for an item; it returns false once stop is closed, leaving what
// is queued unprocessed (and so unacknowledged, for the broker to deliver
// again).
func (q *fifo[T]) pop(stop <-chan struct{}) (T, bool) {
	var zero T
	for {
		select {
		case <-stop:
			return zero, false
		default:
		}
		q.mu.Lock()
		if q.head < len(q.items) {
			v := q.items[q.head]
			q.items[q.head] = zero // let the payload be collected
			q.head++
			more := q.head < len(q.items)
			switch {
			case !more:
				q.items, q.head = q.items[:0], 0
			case q.head >= 1024 && q.head*2 >= len(q.items):
				// Reclaim the consumed front now and then, so that a queue
				// that is never quite empty does not grow for ever.
				n := copy(q.items, q.items[q.head:])
				clear(q.items[n:])
				q.items, q.head = q.items[:n], 0
			}
			q.mu.Unlock()
			if more {
				q.signal() // another consumer may be waiting for the rest
			}
			return v, true
		}
		q.mu.Unlock()
		select {
		case <-q.ready:
		case <-stop:
			return zero, false
		}
	}
}
