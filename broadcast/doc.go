// Package broadcast is loaxa's domain: the units of local government and their
// stations, the devices that play, the monthly programmes, the airings planned
// for them, the events devices report and the policy that judges them.
//
// It is pure Go with no I/O, so that the rules that decide whether a commune
// met its plan can be read, tested and reused (by the offline verifier, by the
// device agent) without a database, a broker or a network.
package broadcast
