// Command loaxa is the command-line client of loaxad for operators, auditors
// and their scripts: it uploads and approves programmes, adjusts airings,
// registers devices, reads compliance and the as-run log, and verifies the
// evidence, online or from a downloaded bundle.
//
//	loaxa programme upload|list|show|approve|withdraw
//	loaxa airing list|show|move|cancel
//	loaxa station list|show
//	loaxa unit list|import
//	loaxa device add|disable
//	loaxa emergency --unit CODE --title TEXT FILE
//	loaxa asrun
//	loaxa report --period P [--unit U] [--format F] [-o FILE]
//	loaxa audit verify [--bundle FILE]
//	loaxa audit bundle --period P -o FILE
//	loaxa audit seal --period YYYY-MM
//	loaxa audit purge --before YYYY-MM
//	loaxa oplog
//	loaxa backup -o FILE
//	loaxa token create --name N --role R [--unit U]
//	loaxa version
//
// The daemon and the token come from --url and --token (or --token-file),
// else from LOAXA_URL and LOAXA_TOKEN. Listing commands print a table, or
// with -o json the daemon's JSON as it sent it. Commands that write a file
// (report, audit bundle, backup) take -o/--out FILE instead.
//
// Scripts can rely on the exit status:
//
//	0  ok
//	1  the daemon refused the request (a 4xx not listed below), or another failure
//	2  usage error: unknown command, bad flag or missing argument
//	3  not authenticated or not allowed (401, 403)
//	4  not found (404)
//	5  conflict (409): overlap, frozen, wrong state
//	6  the daemon or the network is unavailable (5xx, connection refused, timeout)
//	7  verification found problems (audit verify)
//	8  the bundle verified but is not sealed (audit verify --bundle --require-sealed)
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // operators' Windows laptops have no zone database; times are shown in Asia/Ho_Chi_Minh
)

// version is set by the build (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
