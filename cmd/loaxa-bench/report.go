package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/loaxa/loaxa/storage"
)

// The goals of the national-scale benchmark (docs/benchmarks.md).
const (
	goalFanoutRatio = 1.5       // daemon fan-out ≤ 1.5 × the bare publisher's
	goalIngestRatio = 0.8       // daemon events/s ≥ 0.8 × the broker round trip's
	goalRSS         = 768 << 20 // daemon RSS with 10,047 devices on the embedded broker
	goalRSSDevices  = 10047
)

// Machine is where the figures were measured.
type Machine struct {
	CPU       string `json:"cpu"`
	CPUs      int    `json:"cpus"`
	Memory    string `json:"memory"`
	Go        string `json:"go"`
	Kernel    string `json:"kernel"`
	Mosquitto string `json:"mosquitto,omitempty"`
}

func machine(mosquittoBin string) Machine {
	m := Machine{CPU: "unknown", CPUs: runtime.NumCPU(), Memory: "unknown", Go: runtime.Version(), Kernel: "unknown"}
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		m.CPU = v
	}
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		if kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64); err == nil {
			m.Memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if mosquittoBin != "" {
		m.Mosquitto = mosquittoVersion(mosquittoBin)
	}
	return m
}

// procField is the value of the first "name: value" line of a /proc file.
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// readRSS is the resident set of a process ("self" or a pid), in bytes.
func readRSS(pid string) (int64, error) { return readStatusKB(pid, "VmRSS") }

// readStatusKB is a "kB" field of /proc/<pid>/status, in bytes.
func readStatusKB(pid, field string) (int64, error) {
	v := procField("/proc/"+pid+"/status", field)
	if v == "" {
		return 0, fmt.Errorf("no %s for process %s", field, pid)
	}
	kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s of process %s: %w", field, pid, err)
	}
	return kb << 10, nil
}

// readProcCPU is the CPU time, user and system, another process has used.
func readProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after it do not. Of
	// those, utime and stime are the 12th and 13th, in USER_HZ (100/s).
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: no utime and stime", pid)
	}
	return time.Duration(u+s) * (time.Second / 100), nil
}

// loadAverage is the 1, 5 and 15 minute load, as uptime prints it: on a
// shared machine it says whether other work competed for the CPUs.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], ", ")
}

// Report is a run: the machine, the command and each scenario's result.
type Report struct {
	Machine  Machine   `json:"machine"`
	Command  string    `json:"command"`
	Started  time.Time `json:"started"`
	Took     string    `json:"took"`
	Results  []Result  `json:"results"`
	LoadEnd  string    `json:"load_end"`
	Failures int       `json:"failures"`
}

// row is a result's figures as the table shows them.
type row struct {
	broker, devices, snapshot    string
	fanDaemon, fanBare, fanRatio string
	events, ingDaemon            string
	ingTrip, ingTripRatio        string
	ingOneWay, ingOneWayRatio    string
	raw, rss                     string
}

func (r Result) row() row {
	x := row{broker: r.Spec.Broker, devices: thousands(r.Spec.Devices)}
	if r.SnapshotBytes > 0 {
		x.snapshot = fmt.Sprintf("%.0f B, %.1f items", r.SnapshotBytes, r.SnapshotItems)
	}
	if r.FanoutDaemon > 0 {
		x.fanDaemon = seconds(r.FanoutDaemon)
	}
	if r.FanoutBare > 0 {
		x.fanBare = seconds(r.FanoutBare)
		x.fanRatio = verdict(r.FanoutDaemon.Seconds()/r.FanoutBare.Seconds(), "×", r.FanoutDaemon.Seconds() <= goalFanoutRatio*r.FanoutBare.Seconds())
	}
	if r.Events > 0 {
		x.events = thousands(r.Events)
	}
	if r.IngestDaemon > 0 {
		x.ingDaemon = rate(r.Events, r.IngestDaemon)
	}
	// The goal is judged against the round trip: the same exchange, from
	// the same devices. The broker alone, one way, is for information.
	if r.IngestRoundTrip > 0 {
		x.ingTrip = rate(r.Events, r.IngestRoundTrip)
		if r.IngestDaemon > 0 {
			ratio := r.IngestRoundTrip.Seconds() / r.IngestDaemon.Seconds()
			x.ingTripRatio = verdict(ratio, "×", ratio >= goalIngestRatio)
		}
	}
	if r.IngestBroker > 0 {
		x.ingOneWay = rate(r.Events, r.IngestBroker)
		if r.IngestDaemon > 0 {
			x.ingOneWayRatio = fmt.Sprintf("%.2f×", r.IngestBroker.Seconds()/r.IngestDaemon.Seconds())
		}
	}
	if r.RawStorage > 0 {
		x.raw = rate(r.RawEvents, r.RawStorage)
	}
	if r.RSSPeak > 0 {
		x.rss = mib(r.RSSPeak)
		if r.Spec.Broker == brokerEmbedded && r.Spec.Devices >= goalRSSDevices {
			x.rss = verdict(float64(r.RSSPeak)/(1<<20), " MiB", r.RSSPeak <= goalRSS)
		}
		if r.BrokerRSS > 0 {
			x.rss += " + Mosquitto " + mib(r.BrokerRSS)
		}
	}
	return x
}

var tableHeader = []string{
	"broker", "devices", "snapshot",
	"fan-out: daemon", "bare paho", "daemon/bare (goal ≤ 1.5)",
	"events", "ingest: daemon", "broker round trip", "daemon/round trip (goal ≥ 0.8)",
	"broker alone (64 conns, one way)", "daemon/broker alone",
	"storage alone", "daemon RSS, peak (goal ≤ 768 MiB at 10,047 on embedded)",
}

func (x row) cells() []string {
	return []string{x.broker, x.devices, x.snapshot, x.fanDaemon, x.fanBare, x.fanRatio,
		x.events, x.ingDaemon, x.ingTrip, x.ingTripRatio, x.ingOneWay, x.ingOneWayRatio, x.raw, x.rss}
}

// printTable writes the figures for a terminal, then each scenario's
// details and failures.
func printTable(w io.Writer, rep Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(tableHeader, "\t"))
	for _, r := range rep.Results {
		fmt.Fprintln(tw, strings.Join(dashes(r.row().cells()), "\t"))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	for _, r := range rep.Results {
		fmt.Fprintln(w, r.details())
	}
}

// details is the line of a result's secondary figures.
func (r Result) details() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, %s devices: ", r.Spec.Broker, thousands(r.Spec.Devices))
	if r.Err != "" {
		fmt.Fprintf(&b, "FAILED: %s; ", r.Err)
	}
	fmt.Fprintf(&b, "%s airings; fleet connected in %.1f s; ", thousands(r.Airings), r.Connect)
	if r.IngestRoundTrip > 0 {
		fmt.Fprintf(&b, "broker round trip before the daemon's first start: %s, events of %.0f B, %s; ",
			seconds(r.IngestRoundTrip), r.RoundTripBytes, r.RoundTripCPU.roundTrip(r.Spec.Broker))
	}
	if len(r.DaemonRounds) > 0 {
		fmt.Fprintf(&b, "fan-out rounds: daemon %s, bare %s; medians from daemon.Start %s, from the bare first publish %s; ",
			roundList(r.DaemonRounds), roundList(r.BareRounds), seconds(r.FanoutFromStart), seconds(r.BareFromPublish))
	}
	if r.BareWorkers > 0 {
		fmt.Fprintf(&b, "bare with %d publishes outstanding %s; ", schedulerWorkers, seconds(r.BareWorkers))
	}
	if r.FanoutCPU.Wall > 0 {
		fmt.Fprintf(&b, "CPU in the daemon's fan-out: %s; ", r.FanoutCPU)
	}
	if r.Events > 0 {
		fmt.Fprintf(&b, "%s events of %.0f B; ", thousands(r.Events), r.EventBytes)
	}
	if r.IngestCPU.Wall > 0 {
		fmt.Fprintf(&b, "CPU in the ingestion: %s; ", r.IngestCPU)
	}
	if r.IngestBroker > 0 && r.IngestDaemon > 0 {
		fmt.Fprintf(&b, "broker alone, 64 connections one way: %s, daemon/broker alone %.2f×; ",
			seconds(r.IngestBroker), r.IngestBroker.Seconds()/r.IngestDaemon.Seconds())
	}
	if c := r.IngestCommits; c.Commits > 0 {
		fmt.Fprintf(&b, "the daemon's %s; ", commits(c))
	}
	if c := r.RawCommits; c.Commits > 0 {
		fmt.Fprintf(&b, "storage alone: %s; ", commits(c))
	}
	if r.RSSIdle > 0 {
		i := r.Idle
		fmt.Fprintf(&b, "daemon RSS %s after the fan-out (anonymous %s: Go heap %s, stacks %s of %d goroutines; file %s), %s after the events, %s peak; ",
			mib(r.RSSIdle), mib(i.Anon), mib(i.HeapInuse), mib(i.StackInuse), i.Goroutines, mib(i.File), mib(r.RSSAfterEvents), mib(r.RSSPeak))
	}
	if r.DevicesRSS > 0 {
		fmt.Fprintf(&b, "devices process %s; ", mib(r.DevicesRSS))
	}
	fmt.Fprintf(&b, "load %s → %s", r.LoadBefore, r.LoadAfter)
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "; %s", n)
	}
	return b.String()
}

// commits describes the group commit's work in a phase.
func commits(c storage.Stats) string {
	n := time.Duration(c.Commits)
	return fmt.Sprintf("%s commits of %.0f events, %s each (applying %s, writing and fsync the rest)",
		thousands(int(c.Commits)), float64(c.EventsAppended)/float64(c.Commits), (c.CommitTime / n).Round(10*time.Microsecond), (c.ApplyTime / n).Round(10*time.Microsecond))
}

// markdown is the report as docs/benchmarks.md shows it.
func markdown(rep Report) []byte {
	var b bytes.Buffer
	m := rep.Machine
	fmt.Fprintf(&b, "Measured %s, in %s.\n\n", rep.Started.Format("2006-01-02 15:04 MST"), rep.Took)
	fmt.Fprintf(&b, "- CPU: %s, %d CPUs\n- memory: %s\n- %s, %s\n", m.CPU, m.CPUs, m.Memory, m.Go, m.Kernel)
	if m.Mosquitto != "" {
		fmt.Fprintf(&b, "- %s\n", m.Mosquitto)
	}
	fmt.Fprintf(&b, "- load average (1, 5, 15 min) before each scenario: %s; at the end: %s\n\n", loads(rep.Results), rep.LoadEnd)
	fmt.Fprintf(&b, "```\n%s\n```\n\n", rep.Command)
	fmt.Fprintf(&b, "| %s |\n|%s\n", strings.Join(tableHeader, " | "), strings.Repeat(" --- |", len(tableHeader)))
	for _, r := range rep.Results {
		fmt.Fprintf(&b, "| %s |\n", strings.Join(dashes(r.row().cells()), " | "))
	}
	fmt.Fprintln(&b)
	for _, r := range rep.Results {
		fmt.Fprintf(&b, "- %s\n", r.details())
	}
	return b.Bytes()
}

func loads(rs []Result) string {
	var ls []string
	for _, r := range rs {
		ls = append(ls, r.LoadBefore)
	}
	return strings.Join(ls, " / ")
}

func dashes(cells []string) []string {
	for i, c := range cells {
		if c == "" {
			cells[i] = "—"
		}
	}
	return cells
}

func verdict(v float64, unit string, ok bool) string {
	s := fmt.Sprintf("%.2f%s", v, unit)
	if unit == " MiB" {
		s = fmt.Sprintf("%.0f%s", v, unit)
	}
	if ok {
		return s + " ok"
	}
	return s + " MISSED"
}

func (c cpuShare) String() string {
	s := fmt.Sprintf("daemon %s", seconds(c.Daemon))
	if c.Broker > 0 {
		s += fmt.Sprintf(", Mosquitto %s", seconds(c.Broker))
	}
	return s + fmt.Sprintf(", devices %s, in %s of wall time on %d CPUs", seconds(c.Devices), seconds(c.Wall), runtime.NumCPU())
}

// roundTrip describes the CPU of the broker round trip, when the daemon's
// process holds no daemon: with the embedded broker, its CPU is the
// broker's; the receiver runs in the devices process.
func (c cpuShare) roundTrip(broker string) string {
	s := "CPU: "
	if broker == brokerEmbedded {
		s += fmt.Sprintf("broker %s, ", seconds(c.Daemon))
	} else {
		s += fmt.Sprintf("Mosquitto %s, ", seconds(c.Broker))
	}
	return s + fmt.Sprintf("devices and receiver %s, in %s of wall time with the receiver's connecting and leaving", seconds(c.Devices), seconds(c.Wall))
}

func roundList(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, seconds(d))
	}
	return strings.Join(s, ", ")
}

func seconds(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.0f ms", d.Seconds()*1000)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func rate(n int, d time.Duration) string {
	return thousands(int(float64(n)/d.Seconds())) + "/s"
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// thousands writes n with a comma every three digits, as the issue does.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
