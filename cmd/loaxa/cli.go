package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"
)

// Exit codes; see the package comment. They are part of the contract with
// scripts, so they never change meaning.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitAuth        = 3
	exitNotFound    = 4
	exitConflict    = 5
	exitUnavailable = 6
	exitVerify      = 7
	exitUnsealed    = 8
)

const defaultURL = "http://127.0.0.1:8080"

// cli is one invocation: where to write, whom to ask and how. It is built
// by run and never shared, so that tests can run many in one process.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string

	// Global flags, accepted before and after the command's name.
	url       string
	token     string
	tokenFile string
	timeout   time.Duration
	tz        string

	loc    *time.Location
	client *http.Client
	// ttyErr says whether stderr is a terminal, where a progress bar is
	// redrawn in place; elsewhere (a log, CI) it would be noise.
	ttyErr bool
}

// command is a leaf of the command tree, such as "programme upload".
type command struct {
	name    string // "programme upload"
	args    string // what follows the name in the usage line
	summary string // one line, for loaxa --help
	about   string // paragraphs for the command's --help
	example string
	// output: the command takes -o/--output table|json (and csv when
	// csv is true). Commands that write files declare -o FILE themselves.
	output bool
	csv    bool
	// setup declares the command's flags on fs and returns the action,
	// which reads them through the closure.
	setup func(fs *flag.FlagSet) action
}

type action func(ctx context.Context, c *cli, args []string, out outputMode) error

// outputMode is what -o/--output chose.
type outputMode string

const (
	outTable outputMode = "table"
	outJSON  outputMode = "json"
	outCSV   outputMode = "csv"
)

func commands() []*command {
	var cmds []*command
	for _, group := range [][]*command{
		programmeCommands(), airingCommands(), stationCommands(), unitCommands(), deviceCommands(),
		{emergencyCommand()}, evidenceCommands(), tokenCommands(), {versionCommand()},
	} {
		cmds = append(cmds, group...)
	}
	return cmds
}

// usageError is a mistake in the command line: exit 2, with a pointer to
// the help that would have avoided it.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, ttyErr: isTerminal(stderr) && getenv("TERM") != "dumb"}
	top := flag.NewFlagSet("loaxa", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	c.globalFlags(top, true)
	help := top.Bool("help", false, "")
	top.BoolVar(help, "h", false, "")
	if err := top.Parse(args); err != nil {
		return c.fail(usagef("%v", err), nil)
	}
	cmds := commands()
	words := top.Args()
	if *help || (len(words) > 0 && words[0] == "help") {
		if len(words) > 0 && words[0] == "help" {
			words = words[1:]
		}
		return c.help(cmds, words)
	}
	if len(words) == 0 {
		c.topUsage(stderr, cmds)
		return exitUsage
	}
	cmd, rest := lookup(cmds, words)
	if cmd == nil {
		if group := groupOf(cmds, words[0]); len(group) > 0 {
			if len(words) > 1 && !isHelpFlag(words[1]) {
				return c.fail(usagef("%s has no command %q; it has %s", words[0], words[1], names(group)), nil)
			}
			// "loaxa programme --help" asks for the group's commands.
			w, code := stderr, exitUsage
			if len(words) > 1 {
				w, code = stdout, exitOK
			}
			groupUsage(w, words[0], group)
			return code
		}
		return c.fail(usagef("unknown command %q; see loaxa --help", words[0]), nil)
	}
	fs, output, cmdHelp, act := c.flagSet(cmd)
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		return c.fail(usagef("%v", err), cmd)
	}
	if *cmdHelp {
		commandHelp(stdout, cmd, fs)
		return exitOK
	}
	mode := outputMode(*output)
	switch {
	case !cmd.output:
	case mode == outTable, mode == outJSON, mode == outCSV && cmd.csv:
	default:
		return c.fail(usagef("-o %q: want %s", *output, strings.TrimPrefix(fs.Lookup("output").Usage, "`FORMAT` ")), cmd)
	}
	if err := c.resolve(); err != nil {
		return c.fail(err, cmd)
	}
	return c.fail(act(ctx, c, pos, mode), cmd)
}

// flagSet declares a command's flags: the global ones, -o/--output when
// the command prints answers, -h/--help and the command's own.
func (c *cli) flagSet(cmd *command) (fs *flag.FlagSet, output *string, help *bool, act action) {
	fs = flag.NewFlagSet("loaxa "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.globalFlags(fs, false)
	output = new(string)
	if cmd.output {
		what := "table or json"
		if cmd.csv {
			what = "table, json or csv"
		}
		fs.StringVar(output, "output", string(outTable), "`FORMAT` "+what)
		fs.StringVar(output, "o", string(outTable), "")
	}
	act = cmd.setup(fs)
	help = fs.Bool("help", false, "")
	fs.BoolVar(help, "h", false, "")
	return fs, output, help, act
}

// globalFlags declares the flags every command takes. They are declared
// again on each command's flag set, with the values parsed so far as
// defaults, so that "loaxa --url U station list" and
// "loaxa station list --url U" mean the same.
func (c *cli) globalFlags(fs *flag.FlagSet, first bool) {
	if first {
		c.url = firstNonEmpty(c.getenv("LOAXA_URL"), defaultURL)
		c.timeout = time.Minute
		c.tz = firstNonEmpty(c.getenv("LOAXA_TZ"), "Asia/Ho_Chi_Minh")
	}
	fs.StringVar(&c.url, "url", c.url, "")
	fs.StringVar(&c.token, "token", c.token, "")
	fs.StringVar(&c.tokenFile, "token-file", c.tokenFile, "")
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "")
	fs.StringVar(&c.tz, "tz", c.tz, "")
}

// isGlobal tells the global flags apart in a command's --help.
func isGlobal(name string) bool {
	switch name {
	case "url", "token", "token-file", "timeout", "tz", "help", "h":
		return true
	}
	return false
}

// resolve checks the global flags every command needs: the time zone.
// What only requests need is resolved by connect, so that offline
// commands (audit verify --bundle) work without a daemon or a token.
func (c *cli) resolve() error {
	loc, err := time.LoadLocation(c.tz)
	if err != nil {
		return usagef("--tz %q: %v", c.tz, err)
	}
	c.loc = loc
	if c.timeout < 0 {
		return usagef("--timeout %v: want a duration of 0 (wait forever) or more", c.timeout)
	}
	return nil
}

// connect resolves, once, what requests need: the token (--token, then
// --token-file, then LOAXA_TOKEN), the base URL and the HTTP client.
func (c *cli) connect() error {
	if c.client != nil {
		return nil
	}
	switch {
	case c.token != "" && c.tokenFile != "":
		return usagef("give --token or --token-file, not both")
	case c.tokenFile != "":
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return fmt.Errorf("read the token: %w", err)
		}
		c.token = strings.TrimSpace(string(b))
		if c.token == "" {
			return fmt.Errorf("read the token: %s is empty", c.tokenFile)
		}
	case c.token == "":
		c.token = strings.TrimSpace(c.getenv("LOAXA_TOKEN"))
	}
	base, err := baseURL(c.url)
	if err != nil {
		return err
	}
	c.url = base
	c.client = newHTTPClient()
	return nil
}

// fail prints err as docs/api.md's errors read ("loaxa: message (field f)")
// and returns its exit code.
func (c *cli) fail(err error, cmd *command) int {
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	fmt.Fprintf(c.stderr, "loaxa: %v\n", err)
	if code == exitUsage {
		if cmd != nil {
			fmt.Fprintf(c.stderr, "usage: %s\nRun 'loaxa %s --help' for its flags and an example.\n", strings.TrimSpace("loaxa "+cmd.name+" "+cmd.args), cmd.name)
		} else {
			fmt.Fprintln(c.stderr, "Run 'loaxa --help' for the commands.")
		}
	}
	return code
}

// parseInterspersed lets flags follow positional arguments, as operators
// type them ("loaxa programme approve ID -o json"); the flag package alone
// stops at the first argument that is not a flag. Everything after "--"
// is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func lookup(cmds []*command, words []string) (*command, []string) {
	for n := 2; n >= 1; n-- {
		if len(words) < n {
			continue
		}
		name := strings.Join(words[:n], " ")
		for _, c := range cmds {
			if c.name == name {
				return c, words[n:]
			}
		}
	}
	return nil, nil
}

func groupOf(cmds []*command, first string) []*command {
	var out []*command
	for _, c := range cmds {
		if strings.HasPrefix(c.name, first+" ") {
			out = append(out, c)
		}
	}
	return out
}

func names(cmds []*command) string {
	var s []string
	for _, c := range cmds {
		s = append(s, c.name[strings.IndexByte(c.name, ' ')+1:])
	}
	return strings.Join(s, ", ")
}

func isHelpFlag(s string) bool {
	switch s {
	case "-h", "--h", "-help", "--help":
		return true
	}
	return false
}

func (c *cli) help(cmds []*command, words []string) int {
	if len(words) == 0 {
		c.topUsage(c.stdout, cmds)
		return exitOK
	}
	if cmd, _ := lookup(cmds, words); cmd != nil {
		fs, _, _, _ := c.flagSet(cmd)
		commandHelp(c.stdout, cmd, fs)
		return exitOK
	}
	if group := groupOf(cmds, words[0]); len(group) > 0 {
		groupUsage(c.stdout, words[0], group)
		return exitOK
	}
	return c.fail(usagef("unknown command %q", strings.Join(words, " ")), nil)
}

const globalHelp = `Global flags (before or after the command):
  --url URL          the daemon (default $LOAXA_URL, else ` + defaultURL + `)
  --token TOKEN      API token (default $LOAXA_TOKEN)
  --token-file FILE  read the token from FILE, e.g. the daemon's data/admin.token
  --timeout D        give up when the daemon does not answer, or a transfer
                     makes no progress, for D (default 1m; 0 waits forever)
  --tz ZONE          time zone of the times shown and typed
                     (default $LOAXA_TZ, else Asia/Ho_Chi_Minh)
`

const exitHelp = `Exit status:
  0  ok
  1  the daemon refused the request (a 4xx not listed below), or another failure
  2  usage error: unknown command, bad flag or missing argument
  3  not authenticated or not allowed (401, 403)
  4  not found (404)
  5  conflict (409): overlap, frozen, wrong state
  6  the daemon or the network is unavailable (5xx, connection refused, timeout)
  7  verification found problems (audit verify)
`

func (c *cli) topUsage(w io.Writer, cmds []*command) {
	fmt.Fprint(w, `loaxa is the command-line client of loaxad, which runs a province's commune
loudspeaker radio: operators upload and approve programmes and adjust
airings; auditors read compliance and verify the evidence.

Usage: loaxa [global flags] COMMAND [flags] [arguments]

Commands:
`)
	width := 0
	for _, cmd := range cmds {
		width = max(width, len(cmd.name))
	}
	for _, cmd := range cmds {
		fmt.Fprintf(w, "  %-*s  %s\n", width, cmd.name, cmd.summary)
	}
	fmt.Fprint(w, "\n", globalHelp, `
Listing commands print a table; -o json prints the daemon's JSON as it sent
it, for scripts. Commands that write a file (report, audit bundle, backup)
take -o/--out FILE instead.

`, exitHelp, `
Example (Thanh Hoa: province 38, district 380 Thành phố Thanh Hóa,
commune 14755 Phường Hàm Rồng):
  export LOAXA_URL=http://127.0.0.1:8080 LOAXA_TOKEN=$(cat data/admin.token)
  loaxa token create --name Lan --role operator --unit 380
  loaxa station show 14755
  loaxa report --period 2026-12 --unit 380

Run 'loaxa COMMAND --help' for a command's flags and an example.
`)
}

func groupUsage(w io.Writer, group string, cmds []*command) {
	fmt.Fprintf(w, "Usage: loaxa %s COMMAND [flags] [arguments]\n\nCommands:\n", group)
	width := 0
	for _, cmd := range cmds {
		width = max(width, len(cmd.name))
	}
	for _, cmd := range cmds {
		fmt.Fprintf(w, "  %-*s  %s\n", width, cmd.name, cmd.summary)
	}
	fmt.Fprintf(w, "\nRun 'loaxa %s COMMAND --help' for its flags and an example.\n", group)
}

// commandHelp prints a command's usage, what it does, its own flags (the
// global ones are summarised), exit codes and an example.
func commandHelp(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", strings.TrimSpace("loaxa "+cmd.name+" "+cmd.args), strings.TrimSpace(cmd.about))
	type line struct{ names, usage string }
	var lines []line
	width := 0
	fs.VisitAll(func(f *flag.Flag) {
		if isGlobal(f.Name) || len(f.Name) == 1 || f.Usage == "" {
			return // one-letter names are aliases, listed with their long name
		}
		// Usages read "`NAME` what it is": the name goes after the flag,
		// the rest into the description.
		value, usage := flag.UnquoteUsage(f)
		usage = strings.TrimPrefix(usage, value+" ")
		names := "    --" + f.Name
		if short := shortAlias(fs, f); short != "" {
			names = "-" + short + ", --" + f.Name
		}
		if value != "" {
			names += " " + value
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			usage += " (default " + f.DefValue + ")"
		}
		lines = append(lines, line{names, usage})
		width = max(width, len(names))
	})
	sort.SliceStable(lines, func(i, j int) bool {
		return strings.TrimLeft(lines[i].names, " -") < strings.TrimLeft(lines[j].names, " -")
	})
	if len(lines) > 0 {
		fmt.Fprint(w, "\nFlags:\n")
		for _, l := range lines {
			fmt.Fprintf(w, "  %-*s  %s\n", width, l.names, l.usage)
		}
	}
	fmt.Fprint(w, "\n", globalHelp, "\n", exitHelp)
	if cmd.example != "" {
		fmt.Fprintf(w, "\nExample:\n%s\n", strings.TrimRight(cmd.example, "\n"))
	}
}

// shortAlias finds the one-letter flag that shares f's variable.
func shortAlias(fs *flag.FlagSet, f *flag.Flag) string {
	var short string
	fs.VisitAll(func(g *flag.Flag) {
		if len(g.Name) == 1 && g.Name != "h" && sameVar(f, g) {
			short = g.Name
		}
	})
	return short
}

// sameVar reports whether two flags set the same variable: flag.Value
// implementations are pointers to it.
func sameVar(a, b *flag.Flag) bool {
	return fmt.Sprintf("%p", a.Value) == fmt.Sprintf("%p", b.Value)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// exitCode maps an error to the status scripts see.
func exitCode(err error) int {
	var ue *usageError
	var ae *apiError
	var un *unavailableError
	var vf *verifyFailed
	var us *unsealedError
	switch {
	case errors.As(err, &us):
		return exitUnsealed
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ae):
		return ae.exitCode()
	case errors.As(err, &un):
		return exitUnavailable
	case errors.As(err, &vf):
		return exitVerify
	}
	return exitFailure
}
