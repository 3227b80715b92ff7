package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/keelson/keelson/bench/internal/configmapload"
	"github.com/keelson/keelson/internal/testproc"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	// readyPollInterval bounds the error of the time-to-ready figures.
	readyPollInterval = 50 * time.Millisecond
	// stopTimeout is how long a server gets to exit after SIGTERM before
	// SIGKILL; kube-apiserver drains requests on SIGTERM.
	stopTimeout = 15 * time.Second
)

// stage is one step of a side's startup, timed from that step's start.
type stage struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// stack is one side of the comparison while it runs: its processes, the
// admin client config, and how long it took to become ready.
type stack struct {
	label string
	dir   string              // temp dir holding every data dir and log; removed by stop
	procs []*testproc.Process // in start order
	cfg   *rest.Config
	// readySec is from the first process start to the first /readyz 200.
	readySec float64
	stages   []stage
}

// stop stops the processes in reverse start order (kube-apiserver before its
// etcd) and removes the temp dir.
func (s *stack) stop() {
	for _, p := range slices.Backward(s.procs) {
		p.Stop(stopTimeout)
	}
	_ = os.RemoveAll(s.dir) // best effort; a leftover temp dir is harmless
}

// alive reports the first process of s that has exited.
func (s *stack) alive() error {
	for _, p := range s.procs {
		if err := p.ExitedErr(); err != nil {
			return err
		}
	}
	return nil
}

// waitFor polls probe every readyPollInterval until it succeeds, a process of
// s exits, or timeout passes; errors carry the log of last (the process being
// waited for). It returns when probe first succeeded.
func (s *stack) waitFor(ctx context.Context, last *testproc.Process, what string, timeout time.Duration, probe func(context.Context) error) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(readyPollInterval)
	defer tick.Stop()
	var lastErr error
	for {
		if err := s.alive(); err != nil {
			return time.Time{}, err
		}
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		lastErr = probe(pctx)
		pcancel()
		if lastErr == nil {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			if context.Cause(ctx) == context.Canceled {
				return time.Time{}, ctx.Err()
			}
			return time.Time{}, last.Failure(fmt.Errorf("%s not ready after %v: %w", what, timeout, lastErr))
		case <-tick.C:
		}
	}
}

// loadKubeconfig reads an admin kubeconfig into a client config that does not
// throttle the bench's own load.
func loadKubeconfig(path string) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", path, err)
	}
	configmapload.Tune(cfg, "apibench")
	return cfg, nil
}
