package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/broadcast/audio/audiotest"
)

// FuzzJSONBodies sends whatever bytes as the body of the API's JSON
// requests, through the real handlers on a real store, with an admin
// token: the answer is never a server error, a refusal has the error shape
// and a code, and nothing is written from a body that is not exactly one
// JSON object of known fields.
func FuzzJSONBodies(f *testing.F) {
	for _, s := range []string{
		`{"name":"Lan","role":"operator","unit":"14758"}`,
		`{"id":"14758-09","public_key":"` + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" + `"}`,
		`{"start":"2026-12-20T06:00:00+07:00"}`,
		`{"start":"2026-12-20T08:00:00+07:00"}`,
		`{"name":"x","role":"admin"}{"role":"admin"}`,
		`{"name":"x","role":"auditor","extra":1}`,
		`[]`, `null`, `"s"`, ``, `{`, "{\"name\":\"\xff\"}",
	} {
		f.Add(0, []byte(s))
		f.Add(1, []byte(s))
		f.Add(2, []byte(s))
	}
	r := newRig(f)
	r.importUnits()
	lan, minh := r.token("Lan", "operator", "14758"), r.token("Minh", "operator", "38")
	var prog struct{ ID string }
	if code := r.upload(lan, map[string]string{"unit": "14758", "month": "2026-12", "title": "t"}, audiotest.WAV(time.Second), &prog); code != 201 {
		f.Fatalf("upload: %d", code)
	}
	r.json("POST", "/api/v1/programmes/"+prog.ID+"/approve", minh, nil, nil, 200)
	var list struct{ Airings []broadcast.Airing }
	r.json("GET", "/api/v1/airings?station=14758", lan, nil, &list, 200)
	airing := list.Airings[0].ID
	f.Fuzz(func(t *testing.T, route int, body []byte) {
		var method, path string
		switch route % 3 {
		case 0:
			method, path = http.MethodPost, "/api/v1/tokens"
		case 1:
			method, path = http.MethodPost, "/api/v1/stations/14758/devices"
		default:
			method, path = http.MethodPatch, "/api/v1/airings/"+airing
		}
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+r.admin)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		r.srv.Handler().ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, body, w.Code, w.Body)
		}
		if w.Code >= 400 {
			var e struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("%s %q: %d without the error shape: %s", path, body, w.Code, w.Body)
			}
			return
		}
		// Accepted: the body was one JSON object of known fields.
		dec := json.NewDecoder(bytes.NewReader(body))
		var v map[string]any
		if err := dec.Decode(&v); err != nil || dec.More() {
			t.Fatalf("%s accepted %q, which is not one JSON object", path, body)
		}
	})
}
