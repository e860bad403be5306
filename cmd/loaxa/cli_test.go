package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestOperatorsMonth walks a district's month through the binary: tokens,
// an upload approved by a second operator, the airings adjusted, a device
// registered, the report and the evidence checked.
func TestOperatorsMonth(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	url := d.url

	// Tokens: the admin's from data_dir through --token-file; -q gives
	// scripts the bare token, -o json the daemon's answer.
	adminFile := filepath.Join(d.dataDir, "admin.token")
	lan := strings.TrimSpace(must(t, 0, url, "", "--token-file", adminFile, "token", "create", "--name", "Lê Thị Lan", "--role", "operator", "--unit", "380", "-q").stdout)
	var minh struct{ Token, Role, Unit string }
	r := must(t, 0, url, d.admin, "token", "create", "--name", "Minh", "--role", "operator", "--unit", "380", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &minh); err != nil || minh.Token == "" || minh.Role != "operator" || minh.Unit != "380" {
		t.Fatalf("token create -o json: %v, %v", err, r)
	}
	r = must(t, 0, url, d.admin, "token", "create", "--name", "Sở TT&TT", "--role", "auditor", "--unit", "38")
	auditor := field(t, r.stdout, "token")
	if !strings.Contains(r.stdout, "Sở TT&TT") || !strings.Contains(r.stderr, "shown only now") {
		t.Fatalf("token create table: %v", r)
	}

	// Upload as Lan; the progress goes to stderr, as a plain line here
	// because stderr is not a terminal.
	audio := wav(t, 2*time.Second)
	title := "Chuyển đổi số tháng 12/2026"
	r = must(t, 0, url, lan, "programme", "upload", audio, "--unit", "380", "--month", "2026-12", "--title", title, "-o", "json")
	var prog struct {
		ID, Status, Format string
		DurationMS         int64 `json:"duration_ms"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &prog); err != nil || prog.Status != "draft" || prog.Format != "wav" || prog.DurationMS != 2000 {
		t.Fatalf("upload: %v, %v", err, r)
	}
	if !strings.Contains(r.stderr, "uploading chuyen-doi-so.wav: 31.3 KiB in ") || strings.Contains(r.stderr, "\r") {
		t.Fatalf("upload progress on a pipe should be one plain line: %q", r.stderr)
	}

	// The uploader may not approve (403: exit 3); Minh may, once (then 409: exit 5).
	r = must(t, 3, url, lan, "programme", "approve", prog.ID)
	if !strings.HasPrefix(r.stderr, "loaxa: a programme must be approved by someone other than its uploader") {
		t.Fatalf("self-approval refusal: %v", r)
	}
	r = must(t, 0, url, "", "programme", "approve", prog.ID, "--token", minh.Token)
	if !strings.Contains(r.stdout, "approved programme "+prog.ID) || !strings.Contains(r.stdout, "airings planned at") {
		t.Fatalf("approve: %v", r)
	}
	must(t, 5, url, minh.Token, "programme", "approve", prog.ID)

	// Lists: a table aligned on Vietnamese titles, and the daemon's JSON.
	r = must(t, 0, url, lan, "programme", "list", "--unit", "380", "--month", "2026-12")
	assertColumns(t, r.stdout, "TITLE", title)
	r = must(t, 0, url, lan, "programme", "list", "--month", "2026-12", "-o", "json")
	var progs struct {
		Programmes []struct{ ID, Status, Title string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &progs); err != nil || len(progs.Programmes) != 1 || progs.Programmes[0].Status != "approved" || progs.Programmes[0].Title != title {
		t.Fatalf("programme list -o json: %v, %v", err, r)
	}
	must(t, 4, url, lan, "programme", "show", "01NOSUCHPROGRAMME")

	// Airings of Phường Hàm Rồng: move one onto another (409: exit 5,
	// with the daemon's field), move one to a free time, cancel one twice.
	r = must(t, 0, url, lan, "airing", "list", "--station", "14755", "--month", "2026-12", "-o", "json")
	var airs struct {
		Airings []struct {
			ID     string
			Start  time.Time
			Status string
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &airs); err != nil || len(airs.Airings) != 4 {
		t.Fatalf("airing list: %v, %v", err, r)
	}
	a0, a1 := airs.Airings[0], airs.Airings[1]
	r = must(t, 5, url, lan, "airing", "move", a1.ID, "--start", a0.Start.Format(time.RFC3339))
	if !strings.Contains(r.stderr, "it would overlap airing "+a0.ID) || !strings.HasSuffix(strings.TrimSpace(r.stderr), "(field start)") {
		t.Fatalf("overlapping move: %v", r)
	}
	r = must(t, 0, url, lan, "airing", "move", a1.ID, "--start", "2026-12-28 19:30")
	if strings.TrimSpace(r.stdout) != "moved airing "+a1.ID+" at station 14755 to 2026-12-28 19:30" {
		t.Fatalf("move in local time: %v", r)
	}
	must(t, 0, url, lan, "airing", "cancel", airs.Airings[2].ID)
	r = must(t, 5, url, lan, "airing", "cancel", airs.Airings[2].ID)
	if !strings.Contains(r.stderr, "can no longer be cancelled") {
		t.Fatalf("second cancel: %v", r)
	}
	r = must(t, 0, url, lan, "airing", "list", "--station", "14755", "--month", "2026-12")
	if !strings.Contains(r.stdout, "2026-12-28 19:30") || !strings.Contains(r.stdout, "cancelled") || strings.Count(r.stdout, "\n") != 5 {
		t.Fatalf("airing list table: %v", r)
	}

	// Stations and devices: the secret is printed once.
	r = must(t, 0, url, lan, "station", "list", "--unit", "380")
	assertColumns(t, r.stdout, "UNIT", "Phường Hàm Rồng")
	r = must(t, 0, url, lan, "device", "add", "14755-01", "--station", "14755")
	if secret := field(t, r.stdout, "secret"); len(secret) < 16 {
		t.Fatalf("device add printed no secret: %v", r)
	}
	secret := strings.TrimSpace(must(t, 0, url, lan, "device", "add", "14755-02", "--station", "14755", "-q").stdout)
	if len(secret) < 16 || strings.ContainsAny(secret, " \n") {
		t.Fatalf("device add -q: %q", secret)
	}
	must(t, 0, url, lan, "device", "disable", "14755-02")
	r = must(t, 0, url, lan, "station", "show", "14755")
	if !strings.Contains(r.stdout, "Phường Hàm Rồng") || !strings.Contains(r.stdout, "14755-02  disabled") || field(t, r.stdout, "month") != "2026-12" {
		t.Fatalf("station show: %v", r)
	}
	must(t, 5, url, lan, "device", "add", "14755-01", "--station", "14755")
	r = must(t, 0, url, lan, "emergency", "--unit", "14755", "--title", "Cảnh báo lũ sông Mã", wav(t, time.Second))
	if !strings.HasPrefix(r.stdout, "emergency broadcast ") || !strings.Contains(r.stdout, "at 1 stations") {
		t.Fatalf("emergency: %v", r)
	}

	// The report: a table by default, the daemon's JSON in a file with -o.
	r = must(t, 0, url, auditor, "report", "--period", "2026-12", "--unit", "380")
	assertColumns(t, r.stdout, "STATUS", "Phường Hàm Rồng")
	if !strings.Contains(r.stdout, "period 2026-12, unit 380:") {
		t.Fatalf("report summary: %v", r)
	}
	file := filepath.Join(t.TempDir(), "bao-cao-380-2026-12.json")
	r = must(t, 0, url, auditor, "report", "--period", "2026-12", "--unit", "380", "-o", file)
	var rep struct {
		Period string
		Rows   []struct{ Station, Status string }
	}
	if b, err := os.ReadFile(file); err != nil || json.Unmarshal(b, &rep) != nil || rep.Period != "2026-12" || len(rep.Rows) < 2 {
		t.Fatalf("report -o %s: %v (%+v) %v", file, err, rep, r)
	}
	if r.stdout != "" || !strings.Contains(r.stderr, "→ "+file+": ") {
		t.Fatalf("report -o FILE prints only its progress line: %v", r)
	}
	must(t, 2, url, auditor, "report", "--period", "2026-12", "-o", "json")
	r = must(t, 0, url, auditor, "report", "--period", "2026-12", "--unit", "380", "--format", "json", "-o", "-")
	if !json.Valid([]byte(r.stdout)) {
		t.Fatalf("report --format json -o -: %v", r)
	}
	// Other formats are the daemon's to render; the CLI saves the bytes.
	csvFile := filepath.Join(t.TempDir(), "bao-cao.csv")
	r = loaxa(t, url, auditor, "report", "--period", "2026-12", "--unit", "380", "--format", "csv", "-o", csvFile)
	switch b, _ := os.ReadFile(csvFile); {
	case r.code == exitFailure && strings.Contains(r.stderr, "(field format)"):
		t.Logf("this daemon renders no csv yet: %s", r.stderr)
	case r.code != 0 || !strings.Contains(string(b), "14755"):
		t.Fatalf("report --format csv: %v\n%s", r, b)
	}

	// Evidence: the chains check out (for an auditor of the whole tree:
	// verifying reads every unit's entries, so province 38's auditor is
	// refused); the operations log shows who did what.
	inspector := strings.TrimSpace(must(t, 0, url, d.admin, "token", "create", "--name", "Thanh tra Sở", "--role", "auditor", "-q").stdout)
	r = must(t, 0, url, inspector, "audit", "verify")
	if !strings.Contains(r.stdout, "ok: chains, hashes") {
		t.Fatalf("audit verify: %v", r)
	}
	must(t, 3, url, auditor, "audit", "verify")
	must(t, 3, url, lan, "audit", "verify") // operators do not audit
	// An auditor of province 38 gets the bundle of province 38 (other
	// units' entries as hashes only), one of the whole tree the whole log;
	// both verify offline, and say what they are.
	bundle := filepath.Join(t.TempDir(), "evidence-380-2026-12.tar.gz")
	r = must(t, 0, url, auditor, "audit", "bundle", "--period", "2026-12", "-o", bundle)
	r = must(t, 0, "", "", "audit", "verify", "--bundle", bundle)
	if !strings.Contains(r.stdout, "ok: ") || !strings.Contains(r.stdout, "unit 38 (") || !strings.Contains(r.stdout, "per station, recomputed") {
		t.Fatalf("audit verify --bundle of province 38: %v", r)
	}
	r = must(t, 0, url, inspector, "audit", "bundle", "--period", "2026-12", "--unit", "380", "-o", bundle)
	if !strings.Contains(r.stderr, "evidence 2026-12 → "+bundle+": ") {
		t.Fatalf("audit bundle progress: %v", r)
	}
	r = must(t, 0, "", "", "audit", "verify", "--bundle", bundle)
	if !strings.Contains(r.stdout, "ok: ") || !strings.Contains(r.stdout, "every unit's entries in full") {
		t.Fatalf("audit verify --bundle: %v", r)
	}
	// December is not over on this daemon's clock, let alone sealed.
	if !strings.Contains(r.stdout, "NO: no seal of 2026-12") {
		t.Fatalf("audit verify --bundle does not say the bundle is unsealed: %v", r)
	}
	r = must(t, 8, "", "", "audit", "verify", "--bundle", bundle, "--require-sealed")
	if !strings.Contains(r.stderr, "not sealed") {
		t.Fatalf("audit verify --require-sealed of an unsealed bundle: %v", r)
	}
	r = must(t, 0, url, auditor, "oplog")
	for _, want := range []string{"programme.approve", "airing.move", "Minh", "device.disable"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("oplog lacks %q: %v", want, r)
		}
	}
	must(t, 0, url, auditor, "asrun", "--station", "14755", "--from", "2026-12-01")

	// November is over, grace days included, on 10 December: it can be
	// sealed, once (exit 5 again). Purging it is for an admin (exit 3) once
	// the retention is over (exit 5, saying until when).
	r = must(t, 0, url, inspector, "audit", "seal", "--period", "2026-11")
	if !strings.HasPrefix(r.stdout, "sealed 2026-11: ") {
		t.Fatalf("audit seal: %v", r)
	}
	must(t, 5, url, inspector, "audit", "seal", "--period", "2026-11")
	// The sealed November of province 38: the table is recomputed from the
	// bundle and matches the seal, station by station; a bundle whose plan
	// was changed names the stations whose sealed figure it no longer gives.
	november := filepath.Join(t.TempDir(), "evidence-38-2026-11.tar.gz")
	must(t, 0, url, auditor, "audit", "bundle", "--period", "2026-11", "-o", november)
	r = must(t, 0, "", "", "audit", "verify", "--bundle", november, "--require-sealed")
	if !strings.Contains(r.stdout, "sealed:      yes: 2026-11") || !strings.Contains(r.stdout, "14755    Phường Hàm Rồng") ||
		strings.Contains(r.stdout, "MISMATCH") || !strings.Contains(r.stdout, "matches") {
		t.Fatalf("audit verify --bundle of a sealed month: %v", r)
	}
	changed := rewriteBundle(t, november, "required.json", func(b []byte) []byte {
		return bytes.Replace(b, []byte(`"MinReplays": 3`), []byte(`"MinReplays": 2`), 1)
	})
	r = must(t, exitVerify, "", "", "audit", "verify", "--bundle", changed)
	if !strings.Contains(r.stdout, "MISMATCH: sealed aired 0 of 4") || !strings.Contains(r.stdout, "station 14755, 2026-11: the bundle's evidence gives aired 0 of 3") {
		t.Fatalf("audit verify --bundle with a changed plan: %v", r)
	}
	must(t, 3, url, inspector, "audit", "purge", "--before", "2026-12")
	if r = must(t, 5, url, d.admin, "audit", "purge", "--before", "2026-12"); !strings.Contains(r.stderr, "kept until 2031-11-30") {
		t.Fatalf("audit purge within the retention: %v", r)
	}

	// A backup is written whole, readable by its owner only.
	backup := filepath.Join(t.TempDir(), "loaxa.tar")
	must(t, 0, url, d.admin, "backup", "-o", backup)
	if fi, err := os.Stat(backup); err != nil || fi.Size() == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup: %v %v", fi, err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(backup), ".*.part")); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// TestExitCodes checks the statuses scripts rely on.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)

	for _, args := range [][]string{
		{"programme", "list", "--bogus"},
		{"programme", "list", "-o", "yaml"},
		{"programme", "show"},
		{"programme", "frobnicate"},
		{"frobnicate"},
		{},
		{"programme", "upload", "x.wav", "--unit", "380"},
		{"airing", "move", "01ABC", "--start", "tomorrow"},
		{"--timeout", "-1s", "station", "list"},
	} {
		r := must(t, 2, d.url, d.admin, args...)
		if !strings.HasPrefix(r.stderr, "loaxa: ") && len(args) > 0 {
			t.Errorf("loaxa %q: the usage error should start with loaxa: %v", args, r)
		}
	}
	r := must(t, 3, d.url, "not-a-token", "station", "list")
	if strings.TrimSpace(r.stderr) != "loaxa: the token is not valid: it was revoked, has expired or never existed" {
		t.Fatalf("bad token: %v", r)
	}
	must(t, 3, d.url, "", "station", "list") // no token at all
	r = must(t, 4, d.url, d.admin, "programme", "show", "01JFZ3K8W6T9Q2M4N5P7R8S0AB")
	if !strings.HasPrefix(r.stderr, "loaxa: ") {
		t.Fatalf("not found: %v", r)
	}
	must(t, 4, d.url, d.admin, "station", "show", "99999")
	r = must(t, 1, d.url, d.admin, "programme", "upload", wav(t, time.Second), "--unit", "380", "--month", "2026-13", "--title", "Tháng mười ba")
	if !strings.HasSuffix(strings.TrimSpace(r.stderr), "(field month)") {
		t.Fatalf("invalid month: %v", r)
	}
	r = must(t, 1, d.url, d.admin, "programme", "upload", filepath.Join(t.TempDir(), "missing.mp3"), "--unit", "380", "--month", "2026-12", "--title", "x")
	if !strings.Contains(r.stderr, "missing.mp3") {
		t.Fatalf("missing file: %v", r)
	}

	// Nothing listening: a port that was just free.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	r = must(t, 6, dead, d.admin, "station", "list")
	if !strings.Contains(r.stderr, "cannot reach the daemon at "+dead) {
		t.Fatalf("nothing listening: %v", r)
	}
	must(t, 6, "", d.admin, "--url", dead, "programme", "upload", wav(t, time.Second), "--unit", "380", "--month", "2026-12", "--title", "x")

	// Help: on stdout, exit 0, with the exit codes and an example of Thanh Hoa.
	for _, args := range [][]string{{"--help"}, {"help", "programme", "upload"}, {"programme", "upload", "--help"}, {"report", "-h"}, {"programme", "--help"}} {
		r := must(t, 0, "", "", args...)
		if !strings.Contains(r.stdout, "loaxa") || r.stderr != "" {
			t.Fatalf("loaxa %q: %v", args, r)
		}
	}
	r = must(t, 0, "", "", "programme", "upload", "--help")
	for _, want := range []string{"Example:", "--unit 380", "Chuyển đổi số", "Exit status:", "5  conflict (409)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("programme upload --help lacks %q:\n%s", want, r.stdout)
		}
	}
	r = must(t, 0, "", "", "airing", "move", "--help")
	if !strings.Contains(r.stdout, "Example:\n  loaxa airing move ") {
		t.Errorf("airing move --help has no example:\n%s", r.stdout)
	}
}

// field returns the value of a "name: value" line.
func field(t *testing.T, out, name string) string {
	t.Helper()
	for line := range strings.Lines(out) {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %q in:\n%s", name, out)
	return ""
}

// assertColumns checks that the column headed col starts at the same
// character (not byte) in the header and in a row containing text: the
// alignment an operator sees, whatever the diacritics.
func assertColumns(t *testing.T, out, col, text string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	head := strings.Index(lines[0], col)
	if head < 0 {
		t.Fatalf("no column %s in:\n%s", col, out)
	}
	want := utf8.RuneCountInString(lines[0][:head])
	for _, l := range lines[1:] {
		if !strings.Contains(l, text) {
			continue
		}
		runes := []rune(l)
		if len(runes) <= want || runes[want-1] != ' ' || runes[want] == ' ' {
			t.Fatalf("column %s is not aligned at rune %d in %q:\n%s", col, want, l, out)
		}
		return
	}
	t.Fatalf("no row with %q in:\n%s", text, out)
}

// TestTokenLifecycle: token create --expires, token list (never a secret),
// token revoke, after which the token is refused (exit 3).
func TestTokenLifecycle(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	r := must(t, 0, d.url, d.admin, "token", "create", "--name", "Máy xã", "--role", "operator", "--unit", "380", "--expires", "720h")
	id, secret := field(t, r.stdout, "id"), field(t, r.stdout, "token")
	if exp := field(t, r.stdout, "expires"); exp == "never" || exp == "" {
		t.Fatalf("token create --expires 720h: %v", r)
	}
	must(t, 0, d.url, secret, "station", "list", "--unit", "380")
	must(t, 2, d.url, d.admin, "token", "create", "--name", "x", "--role", "operator", "--expires", "soon")

	r = must(t, 0, d.url, d.admin, "token", "list")
	if !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "Máy xã") || strings.Contains(r.stdout, secret) ||
		!strings.Contains(r.stdout, "LAST USED") || !strings.Contains(r.stdout, "bootstrap admin") {
		t.Fatalf("token list: %v", r)
	}
	must(t, 3, d.url, secret, "token", "list") // operators do not manage tokens

	r = must(t, 0, d.url, d.admin, "token", "revoke", id)
	if !strings.Contains(r.stdout, "revoked token "+id) {
		t.Fatalf("token revoke: %v", r)
	}
	must(t, 3, d.url, secret, "station", "list", "--unit", "380")
	must(t, 4, d.url, d.admin, "token", "revoke", id)
}

// rewriteBundle writes a copy of the bundle at path with one file changed
// by edit and the manifest made to agree, as a forger would.
func rewriteBundle(t *testing.T, path, name string, edit func([]byte) []byte) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	gz, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	files := map[string][]byte{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		if files[hdr.Name], err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
	before := files[name]
	files[name] = edit(before)
	if bytes.Equal(before, files[name]) {
		t.Fatalf("the edit changed nothing in %s", name)
	}
	var m map[string]any
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(files[name])
	m["files"].(map[string]any)[name] = map[string]any{"sha256": hex.EncodeToString(sum[:]), "size": len(files[name])}
	files["manifest.json"], _ = json.Marshal(m)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(files[n])
	}
	tw.Close()
	zw.Close()
	out := filepath.Join(t.TempDir(), "changed-"+filepath.Base(path))
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}
