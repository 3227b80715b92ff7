package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary play the children's roles, as the command
// does when it re-executes itself.
func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(child(role))
	}
	os.Exit(m.Run())
}

func TestParseRejectsBadFlags(t *testing.T) {
	for args, want := range map[string]string{
		"-conns 1,x":    `-conns: "x" is not a positive number`,
		"-conns 0":      `-conns: "0" is not a positive number`,
		"-duration 0s":  "-duration must be positive",
		"-rounds 0":     "-rounds must be at least 1",
		"-procs 0":      "-procs must be at least 1",
		"-rate -1":      "-rate must be 0",
		"-rate-conns 0": "-rate-conns at least 1",
		"-ingresses -1": "-ingresses: -1",
		"-no-such-flag": "flag provided but not defined",
	} {
		_, err := parse(strings.Fields(args), io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parse(%s) = %v, want an error containing %q", args, err, want)
		}
	}
	o, err := parse(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(o.loads()); got != 3 {
		t.Errorf("default loads: %d (%v), want 1, 64 and 64 paced", got, o.loads())
	}
}

func TestDataPlaneRoutesBenchHostToBackend(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "from backend "+r.Host) }))
	defer backend.Close()
	p, err := dataPlane(strings.TrimPrefix(backend.URL, "http://"), 20)
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]int{benchHost: http.StatusOK, "other.example": http.StatusNotFound} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "http://"+host+"/x", nil)
		p.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Host %s: %d %q, want %d", host, rec.Code, rec.Body, want)
		}
		if want == http.StatusOK && rec.Body.String() != "from backend "+benchHost {
			t.Errorf("Host %s: body %q, want the backend's answer with the Host kept", host, rec.Body)
		}
	}
	if _, err := dataPlane("no-port", 0); err == nil || !strings.Contains(err.Error(), backendEnv) {
		t.Errorf("dataPlane(no-port) = %v, want an error naming %s", err, backendEnv)
	}
}

func TestDriveFailsOnANonOKAnswer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	_, err := drive(context.Background(), srv.URL, load{conns: 2}, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("drive against a 404 server: %v, want an error saying 404", err)
	}
}

// TestRunWithoutTraefik runs the whole bench briefly, with the children
// as separate processes and no Traefik binary: the Traefik column is left
// out and every other column has requests and an added figure.
func TestRunWithoutTraefik(t *testing.T) {
	o, err := parse(strings.Fields("-traefik-bin "+t.TempDir()+"/none -conns 1,2 -rate-conns 2 -rate 50 -duration 100ms -rounds 2"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ts, stop, err := startTargets(context.Background(), o)
	defer stop()
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].name != "direct" || ts[1].name != "keelson" {
		t.Fatalf("targets %v, want direct and keelson only", ts)
	}
	res, err := measure(context.Background(), o, ts)
	if err != nil {
		t.Fatal(err)
	}
	res.Memory = memories(ts)
	if len(res.Columns) != 6 {
		t.Fatalf("%d columns, want 3 loads x 2 targets: %+v", len(res.Columns), res.Columns)
	}
	for _, c := range res.Columns {
		if c.Requests == 0 || c.ReqPerSec <= 0 || c.P99Us < c.P50Us {
			t.Errorf("column %+v: want requests, a rate and p99 >= p50", c)
		}
		if c.Target == "direct" && (c.P50AddedUs != 0 || c.P99AddedUs != 0) {
			t.Errorf("direct column %+v adds to itself", c)
		}
	}
	var out strings.Builder
	if err := res.print(&out, t.TempDir()+"/figures.json"); err != nil {
		t.Fatal(err)
	}
	if len(res.Memory) != 1 || res.Memory[0].Target != "keelson" || res.Memory[0].RSSMiB <= 0 || res.Memory[0].PeakMiB < res.Memory[0].RSSMiB {
		t.Errorf("memory %+v, want keelson's resident and peak memory", res.Memory)
	}
	for _, want := range []string{"2@50/s", "keelson", "p99 added µs", "load average", "resident memory"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestTraefikRoutesBenchHost starts the Traefik binary, when there is one,
// with the bench's configuration and wants the backend's answer for
// benchHost and Traefik's 404 for another host.
func TestTraefikRoutesBenchHost(t *testing.T) {
	bin := "../../bin/traefik-ref"
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no Traefik binary (scripts/bench-ingress.sh builds %s): %v", bin, err)
	}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "from backend") }))
	defer backend.Close()
	addr, _, cleanup, err := startTraefik(context.Background(), bin, strings.TrimPrefix(backend.URL, "http://"), []string{"GOMAXPROCS=1"})
	defer cleanup()
	if err != nil {
		t.Fatal(err)
	}
	if err := waitRouted(context.Background(), target{"traefik", "http://" + addr, 0}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/x", nil)
	req.Host = "other.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("Host other.example: %s, want 404", resp.Status)
	}
}
