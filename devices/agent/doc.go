// Package agent is the device side of docs/protocol.md: the software of one
// receiver that drives a commune's loudspeaker cluster, on a 4G link and
// village power. It imports no loaxa package but broadcast (the wire types),
// because it runs on the device, not beside the daemon.
//
// # What it does
//
// It connects to the broker as client dev-<id> with a persistent session,
// takes the retained schedule snapshot with the highest rev it has seen,
// fetches every item's audio ahead of time (HTTP Basic with the device's id
// and secret, resumed with Range after a cut, checked against its sha256),
// plays each item at its start by its own clock and never after not_after,
// and reports every step (received, ready, started, finished, failed,
// skipped) as an event signed with the device's ed25519 key. An event stays
// in a durable outbox until the daemon's receipt says that its as-run log
// holds it; the outbox is published again on every reconnect and, while
// anything in it waits, every minute.
//
// Overlapping items: a higher priority preempts a lower one (which is then
// skipped/preempted and not resumed); play_now preempts whatever plays; an
// item kept off the air by a higher one until its window closed is
// skipped/preempted too. An item that leaves a newer snapshot is cancelled:
// skipped/cancelled if it had been reported ready (or was playing), silently
// otherwise. A failed download is retried with a back-off until not_after;
// once the start has come with the audio still missing after repeated
// failures the item is reported failed/download_failed (and still played if
// the audio arrives in its window). A download that does not verify is
// reported failed/checksum_mismatch and retried. A play_now whose window has
// passed when it arrives (a persistent session can deliver it hours late) is
// reported failed/expired, never played.
//
// # Durability
//
// The state lives in data_dir/agent.db (bbolt; see store.go for the
// layout) and the audio in data_dir/audio/<sha256>. Every change is one
// transaction, fsync'd before the agent acts on it: an event's seq, its
// outbox entry and the marks that stop it from being emitted twice commit
// together before it is published, so seqs rise by exactly one across
// restarts and crashes, and nothing is emitted twice or lost.
//
// An airing that was playing when the agent stopped — a shutdown, a
// SIGKILL, a power cut — is reported failed/power, once (at shutdown if the
// agent could, else at the next start), and is not played again: replaying
// it would sound twice, resuming it would sound half. The daemon plans a
// make-up.
//
// # Configuration
//
// A YAML file (LoadConfig), read strictly: unknown keys are errors that name
// the line. Relative paths are relative to the file.
//
//	device: 14755-03                    # the id the daemon issued
//	secret: "…"                         # shown once by POST /api/v1/stations/{id}/devices
//	broker: tcp://radio.example.vn:1883 # or ssl://…:8883
//	daemon_url: https://radio.example.vn  # informative; audio URLs come in snapshots
//	topic_root: loaxa/v1                # the default
//	key_file: device.key                # loaxa-station keygen; optional (unsigned events)
//	data_dir: /var/lib/loaxa-station
//	player: ["mpv", "--no-video", "--volume={volume}", "{file}"]  # default ["null"]
//	volume: 80                          # 1-100 for {volume}; 0: the player's own
//
// # Keys
//
// WriteKeyFile writes a PKCS#8 PEM ed25519 private key with mode 0600 (what
// `openssl genpkey -algorithm ed25519` writes; LoadKeyFile also takes a raw
// 32-byte seed in base64); PublicKeyString gives the standard base64 public
// key to register with the daemon.
package agent
