package server

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/raftnode"
)

// TestFollowLeadership: the work runs exactly while this server leads, once
// per term, and stops when leadership is lost or the term changes.
func TestFollowLeadership(t *testing.T) {
	events := make(chan raftnode.LeadershipEvent)
	var mu sync.Mutex
	running := map[uint64]bool{}
	var started []uint64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var current uint64
	go func() {
		done <- followLeadership(ctx, events, func(ctx context.Context) {
			mu.Lock()
			term := current
			running[term] = true
			started = append(started, term)
			mu.Unlock()
			<-ctx.Done()
			mu.Lock()
			running[term] = false
			mu.Unlock()
		})
	}()
	send := func(leader bool, term uint64) {
		mu.Lock()
		current = term
		mu.Unlock()
		events <- raftnode.LeadershipEvent{IsLeader: leader, Term: term}
	}
	waitRunning := func(term uint64, want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			got := running[term]
			mu.Unlock()
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("work for term %d running = %v, want %v", term, got, want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	send(false, 1)
	send(true, 2)
	waitRunning(2, true)
	send(true, 2) // the same term again: no second run
	send(true, 3) // a new term: stop and start afresh
	waitRunning(2, false)
	waitRunning(3, true)
	send(false, 4)
	waitRunning(3, false)
	send(true, 5)
	waitRunning(5, true)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitRunning(5, false) // returned only after the last run stopped
	mu.Lock()
	defer mu.Unlock()
	if len(started) != 3 {
		t.Errorf("work started for terms %v, want 2, 3 and 5", started)
	}
}

func TestPluginSectionsGetServerDefaults(t *testing.T) {
	cfg := config.DefaultServer()
	cfg.NodeName = "s1"
	cfg.ClusterCIDR = "10.50.0.0/16"
	cfg.Plugins.Config = map[string]json.RawMessage{
		"nodeipam":      json.RawMessage(`{"clusterCIDR":"10.60.0.0/16","nodeCIDRMaskSize":26}`),
		"nodelifecycle": json.RawMessage(`{"nodeEvictionRate":0.5}`),
	}
	specs, err := pluginSpecs(cfg, []string{"nodeipam", "nodelifecycle", "other"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]any{}
	for _, sp := range specs {
		m := map[string]any{}
		if len(sp.Config) > 0 {
			if err := json.Unmarshal(sp.Config, &m); err != nil {
				t.Fatalf("%s: %v", sp.Name, err)
			}
		}
		got[sp.Name] = m
	}
	if got["nodeipam"]["clusterCIDR"] != "10.60.0.0/16" || got["nodeipam"]["nodeCIDRMaskSize"] != 26.0 ||
		got["nodeipam"]["serviceCIDR"] != "10.43.0.0/16" {
		t.Errorf("nodeipam section %v: the operator's keys win, the server fills in the rest", got["nodeipam"])
	}
	if got["nodelifecycle"]["nodeMonitorGracePeriod"] != "40s" || got["nodelifecycle"]["nodeEvictionRate"] != 0.5 {
		t.Errorf("nodelifecycle section %v", got["nodelifecycle"])
	}
	if len(got["other"]) != 0 {
		t.Errorf("a plugin without server defaults got %v", got["other"])
	}

	cfg.Plugins.Config = map[string]json.RawMessage{"nodeipam": json.RawMessage(`[1]`)}
	if _, err := pluginSpecs(cfg, []string{"nodeipam"}); err == nil {
		t.Error("a nodeipam section that is not an object was accepted")
	}
}
