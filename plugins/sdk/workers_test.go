package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

func TestRunWorkersRetriesAndStops(t *testing.T) {
	q := NewQueue[string]("test")
	var mu sync.Mutex
	calls := map[string]int{}
	done := make(chan struct{})
	reconcile := func(_ context.Context, k string) (Result, error) {
		mu.Lock()
		defer mu.Unlock()
		calls[k]++
		switch {
		case k == "flaky" && calls[k] < 3:
			return Result{}, errors.New("not yet")
		case k == "later" && calls[k] == 1:
			return Result{RequeueAfter: time.Millisecond}, nil
		}
		if calls["flaky"] == 3 && calls["later"] == 2 {
			select {
			case <-done:
			default:
				close(done)
			}
		}
		return Result{}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		RunWorkers(ctx, q, 2, reconcile, slog.New(slog.NewTextHandler(io.Discard, nil)))
		close(stopped)
	}()
	q.Add("flaky")
	q.Add("later")
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("keys not retried and requeued: %v", calls)
	}
	cancel()
	select {
	case <-stopped:
	case <-time.After(time.Minute):
		t.Fatal("RunWorkers did not return after cancel")
	}
	if !q.ShuttingDown() {
		t.Error("queue not shut down")
	}
}

func TestDecodeConfig(t *testing.T) {
	type cfg struct {
		Workers int `json:"workers"`
	}
	c := cfg{Workers: 5}
	if err := DecodeConfig(nil, &c); err != nil || c.Workers != 5 {
		t.Errorf("empty section: %v, %+v (defaults must stay)", err, c)
	}
	if err := DecodeConfig(json.RawMessage(`{"workers":2}`), &c); err != nil || c.Workers != 2 {
		t.Errorf("decoding: %v, %+v", err, c)
	}
	err := DecodeConfig(json.RawMessage(`{"wrokers":2}`), &c)
	if err == nil || !strings.Contains(err.Error(), `"wrokers"`) {
		t.Errorf("misspelt key: %v, want an error naming it", err)
	}
}

func TestIgnoreAPIWarnings(t *testing.T) {
	var seen rest.WarningHandler
	p := IgnoreAPIWarnings(Plugin{Name: "p", Kind: KindController, Run: func(_ context.Context, env Env) error {
		seen = env.RESTConfig.WarningHandler
		return nil
	}})
	orig := &rest.Config{Host: "https://x"}
	if err := RunLocal(context.Background(), p, LocalOptions{RESTConfig: orig, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
		t.Fatal(err)
	}
	if _, ok := seen.(rest.NoWarnings); !ok {
		t.Errorf("warning handler %T", seen)
	}
	if orig.WarningHandler != nil {
		t.Error("the caller's config was modified")
	}
}
