package pods

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keelson/keelson/agent/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type probeKind int

const (
	liveness probeKind = iota
	readiness
	startup
)

func (k probeKind) String() string { return [...]string{"Liveness", "Readiness", "Startup"}[k] }

// probeState is a probe's current verdict.
type probeState int

const (
	probeUnknown probeState = iota
	probeSuccess
	probeFailure
)

// prober runs the probes of running containers, one goroutine per probe,
// and keeps their verdicts; a change of verdict wakes the pod's worker.
type prober struct {
	m  *Manager
	mu sync.Mutex
	// probes by container ID and kind.
	workers map[string]*probeWorker
}

type probeWorker struct {
	pod       types.UID
	container string
	kind      probeKind
	stop      chan struct{}
	state     probeState
}

func newProber(m *Manager) *prober { return &prober{m: m, workers: map[string]*probeWorker{}} }

func probeKey(id string, k probeKind) string { return id + "/" + k.String() }

// target is what a probe of a container reaches.
type target struct {
	pod         *v1.Pod
	container   *v1.Container
	containerID string
	podIP       string
	startedAt   time.Time
}

// ensure starts the probes of a running container that are not running yet.
func (p *prober) ensure(t target) {
	specs := map[probeKind]*v1.Probe{liveness: t.container.LivenessProbe, readiness: t.container.ReadinessProbe, startup: t.container.StartupProbe}
	p.mu.Lock()
	defer p.mu.Unlock()
	for kind, spec := range specs {
		if spec == nil {
			continue
		}
		key := probeKey(t.containerID, kind)
		if _, ok := p.workers[key]; ok {
			continue
		}
		w := &probeWorker{pod: t.pod.UID, container: t.containerID, kind: kind, stop: make(chan struct{})}
		if kind == liveness {
			w.state = probeSuccess // until proven otherwise
		}
		p.workers[key] = w
		go p.run(w, t, spec)
	}
}

// retain stops the probes of pod's containers that are not in keep.
func (p *prober) retain(pod types.UID, keep map[string]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for key, w := range p.workers {
		if w.pod == pod && !keep[w.container] {
			close(w.stop)
			delete(p.workers, key)
		}
	}
}

// state returns a probe's verdict and whether the container has such a probe.
func (p *prober) state(id string, kind probeKind) (probeState, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w, ok := p.workers[probeKey(id, kind)]
	if !ok {
		return probeUnknown, false
	}
	return w.state, true
}

// verdicts computes a running container's started and ready flags and
// whether it must be killed (a failed liveness or startup probe).
func (p *prober) verdicts(c *v1.Container, id string) (started, ready bool, kill string) {
	started = true
	if c.StartupProbe != nil {
		s, _ := p.state(id, startup)
		started = s == probeSuccess
		if s == probeFailure {
			kill = "failed startup probe"
		}
	}
	if started && c.LivenessProbe != nil {
		if s, _ := p.state(id, liveness); s == probeFailure {
			kill = "failed liveness probe"
		}
	}
	ready = started
	if started && c.ReadinessProbe != nil {
		s, _ := p.state(id, readiness)
		ready = s == probeSuccess
	}
	return started, ready, kill
}

func (p *prober) set(w *probeWorker, s probeState) {
	p.mu.Lock()
	changed := w.state != s
	w.state = s
	p.mu.Unlock()
	if changed {
		p.m.kick(w.pod)
	}
}

// run is one probe's loop: after the initial delay, probe every period and
// flip the verdict after successThreshold successes or failureThreshold
// failures in a row.
func (p *prober) run(w *probeWorker, t target, spec *v1.Probe) {
	period := time.Duration(max(spec.PeriodSeconds, 1)) * time.Second
	timeout := time.Duration(max(spec.TimeoutSeconds, 1)) * time.Second
	successes, failures := int32(0), int32(0)
	needSuccess := max(spec.SuccessThreshold, 1)
	needFailure := max(spec.FailureThreshold, 1)
	delay := time.Until(t.startedAt.Add(time.Duration(spec.InitialDelaySeconds) * time.Second))
	timer := time.NewTimer(max(delay, 0))
	defer timer.Stop()
	defer p.m.opts.ProbeMetrics.forget(t.pod, t.container.Name, w.kind)
	for {
		select {
		case <-w.stop:
			return
		case <-timer.C:
		}
		timer.Reset(period)
		// Liveness and readiness wait for the startup probe; a startup
		// probe that succeeded is done.
		if w.kind != startup && t.container.StartupProbe != nil {
			if s, _ := p.state(t.containerID, startup); s != probeSuccess {
				continue
			}
		} else if s, _ := p.state(t.containerID, w.kind); w.kind == startup && s == probeSuccess {
			return
		}
		if s, _ := p.state(t.containerID, w.kind); w.kind == liveness && s == probeFailure {
			continue // the container is being restarted
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		began := time.Now()
		out, err := p.probe(ctx, t, spec)
		cancel()
		p.m.opts.ProbeMetrics.observe(t.pod, t.container.Name, w.kind, err == nil, time.Since(began))
		if err == nil {
			successes, failures = successes+1, 0
			if successes >= needSuccess {
				p.set(w, probeSuccess)
			}
			continue
		}
		successes, failures = 0, failures+1
		msg := err.Error()
		if out != "" {
			msg = out
		}
		p.m.event(t.pod, v1.EventTypeWarning, "Unhealthy", "%s probe failed: %s", w.kind, strings.TrimSpace(msg))
		if failures >= needFailure {
			p.set(w, probeFailure)
		}
	}
}

// probe runs one check; the output is the command's for exec probes.
func (p *prober) probe(ctx context.Context, t target, spec *v1.Probe) (string, error) {
	h := spec.ProbeHandler
	switch {
	case h.Exec != nil:
		var out bytes.Buffer
		err := p.m.rt.Exec(ctx, t.containerID, runtime.ExecOptions{Cmd: h.Exec.Command, Stdout: &out, Stderr: &out})
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return "", fmt.Errorf("command %q timed out", strings.Join(h.Exec.Command, " "))
		}
		return out.String(), err
	case h.TCPSocket != nil:
		port, err := resolvePort(h.TCPSocket.Port, t.container)
		if err != nil {
			return "", err
		}
		host := h.TCPSocket.Host
		if host == "" {
			host = t.podIP
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return "", err
		}
		return "", c.Close()
	case h.HTTPGet != nil:
		return "", httpProbe(ctx, h.HTTPGet, t)
	case h.GRPC != nil:
		return "", grpcProbe(ctx, h.GRPC, t.podIP)
	}
	return "", errors.New("probe has no handler")
}

func resolvePort(p intstr.IntOrString, c *v1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("no port named %q in container %s", p.StrVal, c.Name)
}

// userAgent is what kubelet's HTTP probes send.
const userAgent = "kube-probe/1.37"

// httpProbe succeeds on a status from 200 to 399. Redirects are followed on
// the same host; one to another host counts as success, as in kubelet.
func httpProbe(ctx context.Context, g *v1.HTTPGetAction, t target) error {
	port, err := resolvePort(g.Port, t.container)
	if err != nil {
		return err
	}
	host := g.Host
	if host == "" {
		host = t.podIP
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port))}
	if p, q, ok := strings.Cut(path, "?"); ok {
		u.Path, u.RawQuery = p, q
	} else {
		u.Path = path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "*/*")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	client := &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // kubelet does not verify probe targets
			DisableKeepAlives: true,
			Proxy:             nil,
		},
		CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if r.URL.Hostname() != u.Hostname() {
				return http.ErrUseLastResponse // off-host: take the redirect as success
			}
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return nil
	}
	return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
}

func grpcProbe(ctx context.Context, g *v1.GRPCAction, podIP string) error {
	conn, err := grpc.NewClient(net.JoinHostPort(podIP, strconv.Itoa(int(g.Port))),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUserAgent(userAgent))
	if err != nil {
		return err
	}
	defer conn.Close()
	service := ""
	if g.Service != nil {
		service = *g.Service
	}
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return fmt.Errorf("failed to connect service %q: %w", conn.Target(), err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("service unhealthy (responded with %q)", resp.GetStatus())
	}
	return nil
}
