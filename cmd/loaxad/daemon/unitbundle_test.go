package daemon

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loaxa/loaxa/audit"
	"github.com/loaxa/loaxa/broadcast"
)

// TestUnitBundleOfDistrict380: devices of district 380 (station 14755) and
// of district 381 (station 14809) report through the embedded broker; the
// bundle an auditor of district 380 asks for verifies offline — the whole
// chain, and every signature of 380's entries — and holds no payload,
// device id or station of district 381, whose entries and operations are
// there as content hashes only; a byte changed in one of its entries is
// named.
func TestUnitBundleOfDistrict380(t *testing.T) {
	f := startDaemon(t)
	var tuan struct{ Token string }
	f.c.json("POST", "/api/v1/tokens", f.admin, map[string]string{"name": "Tuấn", "role": "operator", "unit": "381"}, &tuan, 201)

	type station struct {
		id, device, uploader, approver, unit string
		key                                  ed25519.PrivateKey
		secret, airing, sha                  string
	}
	stations := []*station{
		{id: "14755", device: "14755-07", uploader: f.lan, approver: f.minh, unit: "380"},
		{id: "14809", device: "14809-07", uploader: f.other, approver: tuan.Token, unit: "381"},
	}
	for _, st := range stations {
		pub, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		st.key = priv
		var dev struct{ ID, Secret string }
		f.c.json("POST", "/api/v1/stations/"+st.id+"/devices", st.uploader, map[string]string{"id": st.device, "public_key": base64.StdEncoding.EncodeToString(pub)}, &dev, 201)
		st.secret = dev.Secret
		var prog struct{ ID, SHA256 string }
		if code := f.c.upload(st.uploader, map[string]string{"unit": st.id, "month": "2026-12", "title": "Bản tin " + st.unit}, wav(2*time.Second), &prog); code != 201 {
			t.Fatalf("upload for %s: %d", st.id, code)
		}
		f.c.json("POST", "/api/v1/programmes/"+prog.ID+"/approve", st.approver, nil, nil, 200)
		var list struct{ Airings []broadcast.Airing }
		f.c.json("GET", "/api/v1/airings?station="+st.id, st.uploader, nil, &list, 200)
		if len(list.Airings) == 0 {
			t.Fatalf("no airings planned at %s", st.id)
		}
		st.airing, st.sha = list.Airings[0].ID, prog.SHA256
	}
	for _, st := range stations {
		publishSignedEvents(t, f, st.device, st.secret, st.key, st.airing, st.sha)
	}
	entries := waitForAsRun(t, f.d.Store(), 8)
	var theirs []broadcast.AsRunEntry
	for _, e := range entries {
		if e.Station == "14809" {
			theirs = append(theirs, e)
		}
	}
	if len(theirs) != 4 {
		t.Fatalf("district 381's entries: %d, want 4", len(theirs))
	}

	path := filepath.Join(t.TempDir(), "380.tar.gz")
	resp := bundleGet(t, f, "/api/v1/audit/bundle?period=2026-12", f.auditor)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Disposition"), "loaxa-evidence-2026-12-380.tar.gz") {
		t.Fatalf("bundle of district 380: %d %v", resp.StatusCode, resp.Header)
	}
	bundleSave(t, resp, path)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := audit.CheckBundleFigures(bytes.NewReader(raw), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	head := entries[len(entries)-1]
	if !c.Result.OK || c.Result.Entries != 8 || c.Result.Head != head.Hash || !c.Manifest.Withheld || c.Manifest.WithheldAsRun != 4 || c.Manifest.WithheldOplog == 0 {
		t.Fatalf("district 380's bundle: %+v, manifest withheld %v %d/%d", c.Result, c.Manifest.Withheld, c.Manifest.WithheldAsRun, c.Manifest.WithheldOplog)
	}
	// Not sealed, December not over: said, and compared with nothing.
	// Its table is district 380's 49 stations, none sealed.
	if c.Over || len(c.Unsealed) != 1 || len(c.Figures) != 49 {
		t.Fatalf("over %v unsealed %v figures %d", c.Over, c.Unsealed, len(c.Figures))
	}
	for _, fc := range c.Figures {
		if fc.Station == "14809" || fc.Sealed != nil {
			t.Fatalf("a figure of district 380's bundle: station %s %s, sealed %v", fc.Station, fc.Figure, fc.Sealed)
		}
	}

	// Nothing of district 381: no payload, device id, station, unit or name.
	files := bundleFiles(t, raw)
	var all []byte
	for _, b := range files {
		all = append(all, b...)
	}
	for _, secret := range []string{"14809-07", "Bắc Sơn", "38/381"} {
		if bytes.Contains(all, []byte(secret)) {
			t.Errorf("district 380's bundle holds %q of district 381", secret)
		}
	}
	for _, e := range theirs {
		if bytes.Contains(all, []byte(base64.StdEncoding.EncodeToString(e.Payload))) {
			t.Errorf("district 380's bundle holds the payload of entry %d", e.Seq)
		}
	}
	for _, line := range bytes.Split(bytes.TrimSpace(files[audit.FileAsRun]), []byte("\n")) {
		var e struct {
			Device, Station string
			Payload         []byte
		}
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatal(err)
		}
		if e.Station == "14809" || e.Device == "14809-07" || (e.Station == "" && len(e.Payload) > 0) {
			t.Fatalf("an as-run line of district 381: %s", line)
		}
	}
	var plan audit.Plan
	if err := json.Unmarshal(files[audit.FileRequired], &plan); err != nil {
		t.Fatal(err)
	}
	for _, st := range plan.Stations {
		if st.ID == "14809" {
			t.Fatal("required.json lists station 14809")
		}
	}

	// A byte changed in one of 380's entries is named.
	var victim uint64
	lines := bytes.Split(bytes.TrimSpace(files[audit.FileAsRun]), []byte("\n"))
	for i, line := range lines {
		var e broadcast.AsRunEntry
		if json.Unmarshal(line, &e) == nil && e.Station == "14755" && e.Event == broadcast.EventFinished {
			e.Payload[bytes.Index(e.Payload, []byte(`"played_ms":`))+len(`"played_ms":`)] = '9'
			lines[i], _ = json.Marshal(e)
			victim = e.Seq
		}
	}
	if victim == 0 {
		t.Fatal("no finished entry of 14755 in the bundle")
	}
	files[audit.FileAsRun] = append(bytes.Join(lines, []byte("\n")), '\n')
	var m audit.Manifest
	json.Unmarshal(files[audit.FileManifest], &m)
	sum := sha256.Sum256(files[audit.FileAsRun])
	m.Files[audit.FileAsRun] = audit.FileSum{SHA256: hex.EncodeToString(sum[:]), Size: int64(len(files[audit.FileAsRun]))}
	files[audit.FileManifest], _ = json.Marshal(m)
	res, err := audit.VerifyBundle(bytes.NewReader(retar(t, raw, files)))
	if err != nil {
		t.Fatal(err)
	}
	named := false
	for _, p := range res.Problems {
		named = named || (p.Log == "asrun" && p.Entry == victim && strings.Contains(p.Problem, "altered"))
	}
	if res.OK || !named {
		t.Fatalf("a byte changed in entry %d: %+v", victim, res.Problems)
	}
}

// bundleFiles reads a bundle's files.
func bundleFiles(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if out[hdr.Name], err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
}

// retar writes files back in the order of the bundle b.
func retar(t *testing.T, b []byte, files map[string][]byte) []byte {
	t.Helper()
	gz, _ := gzip.NewReader(bytes.NewReader(b))
	tr := tar.NewReader(gz)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body := files[hdr.Name]
		if err := tw.WriteHeader(&tar.Header{Name: hdr.Name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}
