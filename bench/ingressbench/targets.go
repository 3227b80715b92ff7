package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// target is one column: where the load is sent.
type target struct {
	name string
	url  string
	pid  int // the proxy's process (0: none measured)
}

// startTargets starts the backend, keelson's data plane and, when its
// binary is there, Traefik, and waits until each answers 200 for
// benchHost. stop ends every process started, also after an error.
func startTargets(ctx context.Context, o options) (ts []target, stop func(), err error) {
	var cleanups []func()
	stop = func() {
		for _, c := range cleanups {
			c()
		}
	}
	kill := func(cmd *exec.Cmd) func() { return func() { cmd.Process.Kill(); cmd.Wait() } }
	env := []string{"GOMAXPROCS=" + strconv.Itoa(o.procs)}
	backend, cmd, err := startChild(ctx, "backend", env)
	if cmd != nil {
		cleanups = append(cleanups, kill(cmd))
	}
	if err != nil {
		return nil, stop, err
	}
	proxyEnv := slices.Clone(env)
	if o.proxyGOGC > 0 {
		proxyEnv = append(proxyEnv, "GOGC="+strconv.Itoa(o.proxyGOGC))
	}
	keelsonEnv := append(slices.Clone(proxyEnv), backendEnv+"="+backend, ingressesEnv+"="+strconv.Itoa(o.ingresses))
	if o.gcTrace {
		keelsonEnv = append(keelsonEnv, "GODEBUG=gctrace=1")
	}
	keelson, cmd, err := startChild(ctx, "keelson", keelsonEnv)
	if cmd != nil {
		cleanups = append(cleanups, kill(cmd))
	}
	if err != nil {
		return nil, stop, err
	}
	ts = []target{{"direct", "http://" + backend, 0}, {"keelson", "http://" + keelson, cmd.Process.Pid}}
	if _, err := os.Stat(o.traefikBin); errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "ingressbench: no Traefik binary at %s, its column is skipped (build it: scripts/bench-ingress.sh, or go build -C bench/traefikref -o $PWD/bin/traefik-ref github.com/traefik/traefik/v3/cmd/traefik)\n", o.traefikBin)
	} else {
		traefik, pid, cleanup, err := startTraefik(ctx, o.traefikBin, backend, proxyEnv)
		cleanups = append(cleanups, cleanup)
		if err != nil {
			return nil, stop, err
		}
		ts = append(ts, target{"traefik", "http://" + traefik, pid})
	}
	for _, t := range ts {
		if err := waitRouted(ctx, t); err != nil {
			return nil, stop, err
		}
	}
	return ts, stop, nil
}

// startChild re-executes this binary in role and reads the address it
// listens on.
func startChild(ctx context.Context, role string, env []string) (string, *exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(append(os.Environ(), env...), childEnv+"="+role)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start %s: %w", role, err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		return "", cmd, fmt.Errorf("%s did not say where it listens (%q): %v", role, line, err)
	}
	return addr, cmd, nil
}

// waitRouted polls t until it answers 200 for benchHost, for up to 30 s.
func waitRouted(ctx context.Context, t target) error {
	hc := &http.Client{Timeout: time.Second}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url+"/", nil)
		if err != nil {
			return err
		}
		req.Host = benchHost
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s at %s did not route %s within 30 s: %v", t.name, t.url, benchHost, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort returns a loopback port nothing listens on now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// traefikStatic is Traefik's static configuration: one entry point, the
// file provider, no access log, metrics, tracing, dashboard, API or
// phoning home; logs at ERROR.
const traefikStatic = `global:
  checkNewVersion: false
  sendAnonymousUsage: false
log:
  level: ERROR
entryPoints:
  web:
    address: "127.0.0.1:%d"
providers:
  file:
    filename: %q
    watch: false
`

// traefikDynamic routes benchHost, every path, to the backend; Traefik's
// default servers transport keeps connections to it alive (200 idle per
// host) and passes the Host header, as keelson's data plane does.
const traefikDynamic = "http:\n" +
	"  routers:\n" +
	"    bench:\n" +
	"      entryPoints: [web]\n" +
	"      rule: \"Host(`" + benchHost + "`) && PathPrefix(`/`)\"\n" +
	"      service: backend\n" +
	"  services:\n" +
	"    backend:\n" +
	"      loadBalancer:\n" +
	"        passHostHeader: true\n" +
	"        servers:\n" +
	"          - url: \"http://%s\"\n"

// startTraefik writes Traefik's configuration to a temporary directory and
// starts bin with it; cleanup stops it and removes the directory, also
// after an error.
func startTraefik(ctx context.Context, bin, backend string, env []string) (addr string, pid int, cleanup func(), err error) {
	cleanup = func() {}
	dir, err := os.MkdirTemp("", "ingressbench-traefik-")
	if err != nil {
		return "", 0, cleanup, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	port, err := freePort()
	if err != nil {
		return "", 0, cleanup, err
	}
	dynamic := filepath.Join(dir, "dynamic.yml")
	static := filepath.Join(dir, "traefik.yml")
	if err := os.WriteFile(dynamic, fmt.Appendf(nil, traefikDynamic, backend), 0o644); err != nil {
		return "", 0, cleanup, err
	}
	if err := os.WriteFile(static, fmt.Appendf(nil, traefikStatic, port, dynamic), 0o644); err != nil {
		return "", 0, cleanup, err
	}
	cmd := exec.CommandContext(ctx, bin, "--configFile="+static)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return "", 0, cleanup, fmt.Errorf("start Traefik %s: %w", bin, err)
	}
	cleanup = func() { cmd.Process.Kill(); cmd.Wait(); os.RemoveAll(dir) }
	return fmt.Sprintf("127.0.0.1:%d", port), cmd.Process.Pid, cleanup, nil
}
