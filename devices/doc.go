// Package devices is the daemon's side of the station protocol
// (docs/protocol.md) over MQTT: an embedded broker for deployments that
// run no broker of their own, the Hub that takes in devices' events and
// statuses and publishes their schedules and commands, and the
// configuration that makes an external Mosquitto enforce the same access
// rules as the embedded broker.
//
// Durability never rests on the broker. An event is acknowledged to the
// broker only once the as-run log holds it on disk (or it was rejected for
// good), and to the device by a receipt sent after that; the device keeps it
// in its outbox until then. A snapshot is re-published whenever its device
// comes online, because a completed publish token proves nothing across a
// reconnect.
package devices
