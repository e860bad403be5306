package devices

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loaxa/loaxa/broadcast"
)

// rejectReasons is the fixed label set of the rejection counters; every
// value is pre-created so that a dashboard sees a zero, not a gap.
var rejectReasons = []string{
	broadcast.RejectMalformed, broadcast.RejectTooLarge, broadcast.RejectVersion, broadcast.RejectSchema,
	broadcast.RejectDevice, broadcast.RejectSignature, broadcast.RejectSeq,
	broadcast.RejectDisabled,
}

// publishKinds label publish failures by what was published.
var publishKinds = []string{kindSchedule, broadcast.CmdReceipt, broadcast.CmdPlayNow, broadcast.CmdStop, broadcast.CmdPing}

type metrics struct {
	eventsReceived   prometheus.Counter
	eventsLogged     prometheus.Counter
	eventsDuplicate  prometheus.Counter
	eventsRejected   *prometheus.CounterVec
	eventsUnmatched  *prometheus.CounterVec
	eventsFailed     prometheus.Counter
	statusesRejected *prometheus.CounterVec
	receiptsSent     prometheus.Counter
	appendLatency    prometheus.Histogram
	online           prometheus.Gauge
	snapshots        prometheus.Counter
	publishFailures  *prometheus.CounterVec
	connected        prometheus.Gauge
	seqGaps          prometheus.Counter
	queued           prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "loaxa", "devices"
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &metrics{
		eventsReceived:  counter("events_received_total", "Event payloads received from devices, valid or not, re-deliveries included."),
		eventsLogged:    counter("events_logged_total", "Events newly committed to the as-run log."),
		eventsDuplicate: counter("events_duplicate_total", "Events already in the as-run log (a re-delivery); answered with a receipt again."),
		eventsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "events_rejected_total",
			Help: "Event payloads refused, by reason; none of them reaches the as-run log."}, []string{"reason"}),
		eventsUnmatched: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "events_unmatched_total",
			Help: "Authentic events logged that count for no airing (an unknown airing, another station's, a claimed time in the future), by reason; receipted so that the device's later events are."}, []string{"reason"}),
		eventsFailed: counter("events_failed_total", "Events not logged because of an internal error; left unacknowledged so that they are delivered again."),
		statusesRejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "statuses_rejected_total",
			Help: "Status payloads refused, by reason."}, []string{"reason"}),
		receiptsSent: counter("receipts_sent_total", "Receipts the broker acknowledged."),
		appendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "append_latency_seconds",
			Help:    "Time to commit an event to the as-run log (group commit included).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
		online:    gauge("online_devices", "Devices whose last status is online."),
		snapshots: counter("snapshots_published_total", "Schedule snapshots the broker acknowledged."),
		publishFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "publish_failures_total",
			Help: "Publishes to devices that failed or timed out, by what was published."}, []string{"kind"}),
		connected: gauge("mqtt_connected", "1 while the daemon's MQTT client is connected to the broker."),
		seqGaps:   counter("seq_gaps_total", "Gaps in a device's event seq not filled within the gap timeout: lost events, a device fault."),
		queued:    gauge("queued_messages", "Messages received and not processed yet."),
	}
	for _, r := range rejectReasons {
		m.eventsRejected.WithLabelValues(r)
		m.statusesRejected.WithLabelValues(r)
	}
	for _, r := range []string{broadcast.UnmatchedUnknownAiring, broadcast.UnmatchedOtherStation, broadcast.UnmatchedFuture} {
		m.eventsUnmatched.WithLabelValues(r)
	}
	for _, k := range publishKinds {
		m.publishFailures.WithLabelValues(k)
	}
	for _, c := range []prometheus.Collector{
		m.eventsReceived, m.eventsLogged, m.eventsDuplicate, m.eventsRejected, m.eventsUnmatched, m.eventsFailed, m.statusesRejected,
		m.receiptsSent, m.appendLatency, m.online, m.snapshots, m.publishFailures, m.connected, m.seqGaps, m.queued,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register device metrics: %w", err)
		}
	}
	return m, nil
}
