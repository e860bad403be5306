package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/loaxa/loaxa/audit"
)

// stationMonth is a compliance row of docs/api.md.
type stationMonth struct {
	Station  string  `json:"station"`
	Name     string  `json:"name"`
	Unit     string  `json:"unit"`
	Month    string  `json:"month"`
	Required int     `json:"required"`
	Aired    int     `json:"aired"`
	Pending  int     `json:"pending"`
	Status   string  `json:"status"`
	Coverage float64 `json:"coverage"`
	Devices  int     `json:"devices"`
}

// verifyResult is docs/api.md's answer of /audit/verify, and what an offline
// bundle check gives.
type verifyResult struct {
	OK        bool   `json:"ok"`
	Entries   uint64 `json:"entries"`
	Head      string `json:"head"`
	OpEntries uint64 `json:"op_entries"`
	OpHead    string `json:"op_head"`
	Records   uint64 `json:"records"`
	Airings   uint64 `json:"airings"`
	Problems  []struct {
		Log     string `json:"log"`
		Entry   uint64 `json:"entry"`
		Record  string `json:"record"`
		Problem string `json:"problem"`
	} `json:"problems"`
}

func evidenceCommands() []*command {
	return []*command{asrunCommand(), reportCommand(), auditVerifyCommand(), auditBundleCommand(), auditSealCommand(), auditPurgeCommand(), oplogCommand(), backupCommand()}
}

// outFlag declares -o/--out FILE for the commands that write a file.
func outFlag(fs *flag.FlagSet, usage string) *string {
	out := fs.String("out", "", "`FILE` to write; - for standard output"+usage)
	fs.StringVar(out, "o", "", "")
	return out
}

// checkOut refuses "-o json" and "-o table" where -o names a file: the
// user meant the output format of the listing commands, and a file named
// "json" is never what they want.
func checkOut(out string, alt string) error {
	if out == "json" || out == "table" {
		return usagef("here -o is the FILE to write, not a format: %s (use ./%s for a file of that name)", alt, out)
	}
	return nil
}

func asrunCommand() *command {
	return &command{
		name: "asrun", args: "[--station ID] [--device ID] [--from TIME] [--to TIME] [--after SEQ] [--limit N]",
		summary: "read the as-run log: every signed playback event, in log order",
		about: `Reads the hash-chained as-run log in log order, filtered by station, device
and receipt time. The daemon sends at most --limit entries (10000 unless
told); continue with --after the last SEQ shown. -o json and -o csv pass
the daemon's document through as it streams, for large exports.`,
		example: `  loaxa asrun --station 14755 --from 2026-12-01 --to 2027-01-01
  loaxa asrun --from 2026-12-01 -o csv > asrun-2026-12.csv`,
		output: true, csv: true,
		setup: func(fs *flag.FlagSet) action {
			st := fs.String("station", "", "`ID` a station")
			dev := fs.String("device", "", "`ID` a device")
			from := fs.String("from", "", "`TIME` entries received at or after it (RFC 3339, or a date and time in --tz)")
			to := fs.String("to", "", "`TIME` entries received before it")
			after := fs.Uint64("after", 0, "`SEQ` entries after this one")
			limit := fs.Int("limit", 0, "`N` at most this many entries (the daemon's default: 10000)")
			return func(ctx context.Context, c *cli, args []string, out outputMode) error {
				if err := noArgs(args); err != nil {
					return err
				}
				q := query("station", *st, "device", *dev)
				if err := c.timeParams(q, "from", *from, "to", *to); err != nil {
					return err
				}
				if *after > 0 {
					q.Set("after", strconv.FormatUint(*after, 10))
				}
				if *limit < 0 {
					return usagef("--limit %d: want a positive number", *limit)
				}
				if *limit > 0 {
					q.Set("limit", strconv.Itoa(*limit))
				}
				if out != outTable {
					q.Set("format", string(out))
					return c.stream(ctx, "/api/v1/asrun", q, c.stdout)
				}
				var res struct {
					Entries []struct {
						Seq        uint64    `json:"seq"`
						ReceivedAt time.Time `json:"received_at"`
						Device     string    `json:"device"`
						Station    string    `json:"station"`
						Airing     string    `json:"airing"`
						DeviceSeq  uint64    `json:"device_seq"`
						Event      string    `json:"event"`
					}
				}
				if _, err := c.get(ctx, "/api/v1/asrun", q, &res); err != nil {
					return err
				}
				t := newTable(c.stdout, "SEQ", "RECEIVED", "STATION", "DEVICE", "DEVICE SEQ", "EVENT", "AIRING")
				for _, e := range res.Entries {
					t.row(strconv.FormatUint(e.Seq, 10), c.when(e.ReceivedAt), e.Station, e.Device, strconv.FormatUint(e.DeviceSeq, 10), e.Event, e.Airing)
				}
				if err := t.flush(); err != nil {
					return err
				}
				if n := len(res.Entries); n > 0 && (n == *limit || (*limit == 0 && n == 10000)) {
					fmt.Fprintf(c.stderr, "More entries may follow: loaxa asrun --after %d\n", res.Entries[n-1].Seq)
				}
				return nil
			}
		},
	}
}

// timeParams adds times typed by the user to q as RFC 3339.
func (c *cli) timeParams(q url.Values, kv ...string) error {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		t, err := c.parseWhen(kv[i], kv[i+1])
		if err != nil {
			return err
		}
		q.Set(kv[i], t.Format(time.RFC3339))
	}
	return nil
}

// stream copies a GET's answer to w as it arrives, bounded by idleness.
func (c *cli) stream(ctx context.Context, path string, q url.Values, w io.Writer) error {
	ctx, touch, stop := c.transferContext(ctx)
	defer stop()
	req, err := c.request(ctx, http.MethodGet, path, q, nil)
	if err != nil {
		return err
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	ew := &errWriter{w: w}
	p := &progress{touch: touch} // counts nothing on screen; keeps the watchdog fed
	if _, err := io.Copy(ew, p.reader(resp.Body)); err != nil {
		if ew.err != nil {
			return fmt.Errorf("write: %w", err)
		}
		return c.transportError(req, fmt.Errorf("the answer broke off: %w", err))
	}
	return nil
}

func reportCommand() *command {
	return &command{
		name: "report", args: "--period P [--unit CODE] [--format F] [-o FILE]",
		summary: "the compliance report of a period",
		about: `Reports each station's compliance for a month (2026-12), a half-year
(2026-H2) or a year (2026): airings required and aired, pending, status
(compliant, in_progress, at_risk, non_compliant) and device coverage.

--format is what the daemon renders: json (the default), csv, xlsx, pdf or
html. JSON is shown as a table unless -o FILE is given; the other formats
are written to -o FILE, or to standard output when it is not a terminal.
-o - writes any format, JSON included, to standard output.`,
		example: `  loaxa report --period 2026-12 --unit 380
  loaxa report --period 2026-H2 --unit 38 --format xlsx -o bao-cao-thanh-hoa-2026-H2.xlsx`,
		setup: func(fs *flag.FlagSet) action {
			period := fs.String("period", "", "`P` a month 2026-12, a half-year 2026-H2 or a year 2026 (required)")
			unit := fs.String("unit", "", "`CODE` a unit (default: the token's)")
			format := fs.String("format", "json", "`F` json, csv, xlsx, pdf or html")
			out := outFlag(fs, "")
			return func(ctx context.Context, c *cli, args []string, _ outputMode) error {
				if err := noArgs(args); err != nil {
					return err
				}
				if err := required("period", *period); err != nil {
					return err
				}
				if err := checkOut(*out, "for JSON on standard output give --format json -o -"); err != nil {
					return err
				}
				q := query("period", *period, "unit", *unit, "format", *format)
				if *format == "json" && *out == "" {
					var rep struct {
						Period string         `json:"period"`
						Unit   string         `json:"unit"`
						Totals map[string]int `json:"totals"`
						Rows   []stationMonth `json:"rows"`
					}
					if _, err := c.get(ctx, "/api/v1/compliance", query("period", *period, "unit", *unit), &rep); err != nil {
						return err
					}
					return c.printReport(rep.Period, rep.Unit, rep.Totals, rep.Rows)
				}
				dst := *out
				if dst == "" {
					if isTerminal(c.stdout) && (*format == "xlsx" || *format == "pdf") {
						return usagef("a %s report is binary; give -o FILE, or redirect standard output", *format)
					}
					dst = "-"
				}
				_, err := c.download(ctx, "/api/v1/compliance", q, dst, "report "+*period+" ("+*format+") → "+dst, 0o644)
				return err
			}
		},
	}
}

func (c *cli) printReport(period, unit string, totals map[string]int, rows []stationMonth) error {
	t := newTable(c.stdout, "STATION", "NAME", "MONTH", "REQUIRED", "AIRED", "PENDING", "STATUS", "COVERAGE", "DEVICES")
	for _, r := range rows {
		t.row(r.Station, r.Name, r.Month, itoa(r.Required), itoa(r.Aired), itoa(r.Pending), r.Status, percent(r.Coverage), itoa(r.Devices))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if unit == "" {
		unit = "all"
	}
	var counts []string
	for _, s := range []string{"compliant", "in_progress", "at_risk", "non_compliant"} {
		if n := totals[s]; n > 0 {
			counts = append(counts, fmt.Sprintf("%s %d", s, n))
		}
	}
	_, err := fmt.Fprintf(c.stdout, "\nperiod %s, unit %s: %d stations; aired %d of %d required; %s\n",
		sanitize(period), sanitize(unit), totals["stations"], totals["aired"], totals["required"], strings.Join(counts, ", "))
	return err
}

func auditVerifyCommand() *command {
	return &command{
		name: "audit verify", args: "[--bundle FILE [--require-sealed]]",
		summary: "verify the evidence: the daemon's logs, or a bundle offline",
		about: `Checks the hash chains of the as-run log and the operations log, every
entry's hash, their numbering and each device's signature. Without
--bundle the daemon checks its own logs (auditor role). With --bundle the
check runs here, offline, on a bundle from 'loaxa audit bundle': it needs
neither the daemon nor a token, and trusts nothing but the bundle. It
also says whether the period was over when the bundle was made and whether
its months are sealed, and recomputes, from the bundle alone, each of its
stations' months (required, aired, status) and compares them with the
figures the daemon sealed: a station whose sealed figure differs is named.
A unit's bundle holds the other units' entries as hashes only: their
chain is checked, their content cannot be.

Exits 7 when problems are found, after listing them; with --require-sealed,
8 when the bundle checks out but a month of its period is not sealed.`,
		example: `  loaxa audit verify
  loaxa audit verify --bundle evidence-thanh-hoa-2026-12.tar.gz
  loaxa audit verify --bundle evidence-2026-12-380.tar.gz --require-sealed`,
		output: true,
		setup: func(fs *flag.FlagSet) action {
			bundle := fs.String("bundle", "", "`FILE` a bundle to verify offline")
			requireSealed := fs.Bool("require-sealed", false, "with --bundle: fail (exit 8) unless every month of the bundle's period is sealed")
			return func(ctx context.Context, c *cli, args []string, out outputMode) error {
				if err := noArgs(args); err != nil {
					return err
				}
				if *requireSealed && *bundle == "" {
					return usagef("--require-sealed goes with --bundle FILE")
				}
				var raw []byte
				var res verifyResult
				var bv *bundleVerdict
				var manifest audit.Manifest
				if *bundle != "" {
					b, err := verifyBundle(*bundle)
					if err != nil {
						return fmt.Errorf("verify %s: %w", *bundle, err)
					}
					v := verdictOf(b)
					bv, manifest = &v, b.Manifest
					if raw, err = json.Marshal(v); err != nil {
						return fmt.Errorf("verify %s: %w", *bundle, err)
					}
					if err := decode(raw, &res, "the bundle's verdict"); err != nil {
						return err
					}
				} else {
					var err error
					if raw, err = c.get(ctx, "/api/v1/audit/verify", nil, &res); err != nil {
						return err
					}
				}
				if out == outJSON {
					if err := printJSON(c.stdout, raw); err != nil {
						return err
					}
				} else {
					if bv != nil {
						if err := c.printBundle(*bv, manifest); err != nil {
							return err
						}
						fmt.Fprintln(c.stdout)
					}
					if err := c.printVerdict(res); err != nil {
						return err
					}
				}
				if !res.OK {
					return &verifyFailed{problems: len(res.Problems)}
				}
				if *requireSealed && len(bv.Unsealed) > 0 {
					return &unsealedError{months: bv.Unsealed}
				}
				return nil
			}
		},
	}
}

func (c *cli) printVerdict(r verifyResult) error {
	if err := fields(c.stdout,
		"as-run log", fmt.Sprintf("%d entries, head %s", r.Entries, r.Head),
		"operations log", fmt.Sprintf("%d entries, head %s", r.OpEntries, r.OpHead)); err != nil {
		return err
	}
	if r.Records > 0 {
		// Only the daemon's verification reads the records; a bundle has none.
		if err := fields(c.stdout, "records", fmt.Sprintf("%d re-hashed, %d airings rebuilt from their evidence", r.Records, r.Airings)); err != nil {
			return err
		}
	}
	if r.OK {
		_, err := fmt.Fprintln(c.stdout, "ok: chains, hashes, numbering and device signatures check out")
		return err
	}
	fmt.Fprintf(c.stdout, "\n%d PROBLEMS:\n", len(r.Problems))
	t := newTable(c.stdout, "LOG", "ENTRY", "PROBLEM")
	for _, p := range r.Problems {
		where := strconv.FormatUint(p.Entry, 10)
		if p.Record != "" {
			where = p.Record
		}
		t.row(p.Log, where, p.Problem)
	}
	return t.flush()
}

func auditBundleCommand() *command {
	return &command{
		name: "audit bundle", args: "--period P [--unit CODE] -o FILE",
		summary: "download the evidence bundle of a period, for offline verification",
		about: `Downloads the evidence bundle of a period (a gzip'd tar): what an auditor
needs to check the compliance figures without trusting the daemon. With a
token of the whole tree it holds the whole log of its period (--unit only
records which stations the auditor is after); with an auditor token of a
unit (or --unit below it), that unit's bundle: its entries in full, every
other unit's as hashes only, which keep the chain checkable and reveal
nothing. It is refused (exit 5) for a period whose other units' entries
were logged before the log chained content hashes.

The daemon assembles the bundle before it sends the first byte; for a year
of a whole province that may take longer than --timeout's minute, so give
a longer --timeout. The file is written under a temporary name and renamed
when complete; check it with 'loaxa audit verify --bundle FILE'.`,
		example: `  loaxa audit bundle --period 2026-12 --unit 38 -o evidence-thanh-hoa-2026-12.tar.gz
  loaxa audit verify --bundle evidence-thanh-hoa-2026-12.tar.gz`,
		setup: func(fs *flag.FlagSet) action {
			period := fs.String("period", "", "`P` a month 2026-12, a half-year 2026-H2 or a year 2026 (required)")
			unit := fs.String("unit", "", "`CODE` the unit whose stations the bundle names, e.g. 38")
			out := outFlag(fs, " (required)")
			return func(ctx context.Context, c *cli, args []string, _ outputMode) error {
				if err := noArgs(args); err != nil {
					return err
				}
				if err := required("period", *period, "out", *out); err != nil {
					return err
				}
				if err := checkOut(*out, "give the bundle's file name"); err != nil {
					return err
				}
				_, err := c.download(ctx, "/api/v1/audit/bundle", query("period", *period, "unit", *unit), *out, "evidence "+*period+" → "+*out, 0o644)
				return err
			}
		},
	}
}

func auditSealCommand() *command {
	return &command{
		name: "audit seal", args: "--period YYYY-MM",
		summary: "seal a closed month: record its chain heads in the operations log",
		about: `Seals a month whose grace days are over (7 days after its end): the
operations log records where the month's evidence lies in both logs and
their heads, so that changing it afterwards shows. Download its bundle
with 'loaxa audit bundle' and keep it: once the retention is over, a purge
removes the sealed months' as-run entries from the daemon. Needs an admin
or an auditor of the whole tree; a month sealed already is a conflict
(exit 5).`,
		example: `  loaxa audit seal --period 2026-12
  loaxa audit bundle --period 2026-12 -o evidence-2026-12.tar.gz`,
		output: true,
		setup: func(fs *flag.FlagSet) action {
			period := fs.String("period", "", "`YYYY-MM` the month to seal (required)")
			return func(ctx context.Context, c *cli, args []string, out outputMode) error {
				if err := noArgs(args); err != nil {
					return err
				}
				if err := required("period", *period); err != nil {
					return err
				}
				b, err := c.callJSON(ctx, http.MethodPost, "/api/v1/audit/seal", query("period", *period), nil)
				if err != nil || out == outJSON {
					return jsonOr(c, b, err)
				}
				var res struct {
					Op struct {
						Seq uint64 `json:"seq"`
					} `json:"op"`
					Seal struct {
						AsRun struct {
							First   uint64 `json:"first_seq"`
							Last    uint64 `json:"last_seq"`
							Entries uint64 `json:"entries"`
						} `json:"asrun"`
					} `json:"seal"`
				}
				if err := decode(b, &res, "seal"); err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "sealed %s: %d as-run entries (%d to %d), operation %d\n", *period,
					res.Seal.AsRun.Entries, res.Seal.AsRun.First, res.Seal.AsRun.Last, res.Op.Seq)
				return nil
			}
		},
	}
}

func auditPurgeCommand() *command {
	return &command{
		name: "audit purge", args: "--before YYYY-MM",
		summary: "remove as-run entries older than the retention from the daemon",
		about: `Removes the as-run entries received before the given month, once every
month they belong to is sealed and ended longer ago than the daemon's
retention (5 years by default): a conflict otherwise (exit 5), saying
which month is not sealed or until when the evidence is kept. The
airings stay, so old months still have their compliance reports; the
months' bundles, kept since they were sealed, are their evidence. The
purge is written to the operations log, and 'loaxa audit verify' checks
the log from where it now starts. Admin only.`,
		example: `  loaxa audit purge --before 2022-01`,
		output:  true,
		setup: func(fs *flag.FlagSet) action {
			before := fs.String("before", "", "`YYYY-MM` the first month to keep (required)")
			return func(ctx context.Context, c *cli, args []string, out outputMode) error {
				if err := noArgs(args); err != nil {
					return err
				}
				if err := required("before", *before); err != nil {
					return err
				}
				b, err := c.callJSON(ctx, http.MethodPost, "/api/v1/audit/purge", query("before", *before), nil)
				if err != nil || out == outJSON {
					return jsonOr(c, b, err)
				}
				var res struct {
					Op    uint64 `json:"op"`
					Purge struct {
						Upto    uint64 `json:"asrun_upto"`
						Entries int    `json:"entries_removed"`
					} `json:"purge"`
				}
				if err := decode(b, &res, "purge"); err != nil {
					return err
				}
				fmt.Fprintf(c.stdout, "purged %d as-run entries received before %s (up to entry %d; operation %d)\n", res.Purge.Entries, *before, res.Purge.Upto, res.Op)
				return nil
			}
		},
	}
}

func oplogCommand() *command {
	return &command{
		name: "oplog", args: "[--from TIME] [--to TIME]",
		summary: "the operations log: who did what",
		about:   `Lists the hash-chained operations log (auditor role): uploads, approvals, moves, cancellations, devices, tokens, with who did them.`,
		example: `  loaxa oplog --from 2026-12-01 --to 2027-01-01`,
		output:  true,
		setup: func(fs *flag.FlagSet) action {
			from := fs.String("from", "", "`TIME` entries at or after it (RFC 3339, or a date and time in --tz)")
			to := fs.String("to", "", "`TIME` entries before it")
			return func(ctx context.Context, c *cli, args []string, out outputMode) error {
				if err := noArgs(args); err != nil {
					return err
				}
				q := url.Values{}
				if err := c.timeParams(q, "from", *from, "to", *to); err != nil {
					return err
				}
				var res struct {
					Entries []struct {
						Seq     uint64    `json:"seq"`
						At      time.Time `json:"at"`
						Actor   string    `json:"actor"`
						Action  string    `json:"action"`
						Subject string    `json:"subject"`
						Detail  []byte    `json:"detail"` // JSON, base64 in transit
					}
				}
				b, err := c.get(ctx, "/api/v1/oplog", q, &res)
				if err != nil || out == outJSON {
					return jsonOr(c, b, err)
				}
				t := newTable(c.stdout, "SEQ", "AT", "ACTOR", "ACTION", "SUBJECT", "DETAIL")
				for _, e := range res.Entries {
					t.row(strconv.FormatUint(e.Seq, 10), c.when(e.At), e.Actor, e.Action, e.Subject, truncate(detail(e.Detail), 80))
				}
				return t.flush()
			}
		},
	}
}

// detail shows an operation's JSON detail as key=value pairs.
func detail(b []byte) string {
	var m map[string]any
	if len(b) == 0 || json.Unmarshal(b, &m) != nil {
		return string(b)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func backupCommand() *command {
	return &command{
		name: "backup", args: "-o FILE",
		summary: "download a consistent copy of the daemon's database (admin)",
		about: `Downloads a consistent copy of the database while the daemon runs (admin
role). It holds token and device secret hashes: the file is created
readable by its owner only.`,
		example: `  loaxa --token-file data/admin.token backup -o loaxa-$(date +%F).tar`,
		setup: func(fs *flag.FlagSet) action {
			out := outFlag(fs, " (required)")
			return func(ctx context.Context, c *cli, args []string, _ outputMode) error {
				if err := noArgs(args); err != nil {
					return err
				}
				if err := required("out", *out); err != nil {
					return err
				}
				if err := checkOut(*out, "give the backup's file name"); err != nil {
					return err
				}
				_, err := c.download(ctx, "/api/v1/backup", nil, *out, "backup → "+*out, 0o600)
				return err
			}
		},
	}
}
