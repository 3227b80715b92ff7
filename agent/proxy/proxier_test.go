package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/keelson/keelson/agent/internal/netnstest"
)

// TestProxierFollowsTheAPIAndRepairsFlushedTables runs a Proxier over a
// fake API in a private network namespace: rules follow service and
// endpoint changes, and come back after someone flushes the tables.
func TestProxierFollowsTheAPIAndRepairsFlushedTables(t *testing.T) {
	if !netnstest.Isolate(t) {
		return
	}
	proxierFollowsTheAPI(t, proxierMode{
		mode: ModeIPTables, dump: []string{"iptables-save"}, newService: "-d 10.96.0.21/32",
		flush:    [][]string{{"iptables", "-t", "nat", "-F"}, {"iptables", "-t", "nat", "-X"}},
		restored: "-A PREROUTING -m comment --comment keelson-service-portals -j KEELSON-SERVICES",
		endpoint: "%s:%d",
	})
}

// TestNFTProxierFollowsTheAPIAndRepairsADeletedTable is the same in the
// nftables mode.
func TestNFTProxierFollowsTheAPIAndRepairsADeletedTable(t *testing.T) {
	if !netnstest.Isolate(t) {
		return
	}
	proxierFollowsTheAPI(t, proxierMode{
		mode: ModeNFTables, dump: []string{"nft", "list", "ruleset"}, newService: "10.96.0.21 . tcp . 80 : goto svc-",
		flush:    [][]string{{"nft", "delete", "table", "ip", NFTTableName}},
		restored: "type nat hook prerouting priority dstnat",
		endpoint: ": %s . %d", // an element of the endpoints map
	})
}

// proxierMode is what differs between the modes in proxierFollowsTheAPI.
type proxierMode struct {
	mode       string
	dump       []string   // the command that lists the rules
	newService string     // in the dump once 10.96.0.21:80 is programmed
	flush      [][]string // commands that remove the rules behind the proxy's back
	restored   string     // in the dump once the proxy repaired its rules
	endpoint   string     // an endpoint (address, port) as the dump shows it
}

func proxierFollowsTheAPI(t *testing.T, m proxierMode) {
	ctx := context.Background()
	client := fake.NewClientset(svc("default", "web", "10.96.0.20"), twoEndpoints())
	syncs := make(chan SyncStats, 100)
	// The first sync is kept apart: waitRules drains syncs.
	first := make(chan SyncStats, 1)
	var once sync.Once
	_, stop := runTestProxier(t, client, Config{Mode: m.mode, CanaryPeriod: 200 * time.Millisecond,
		OnSync: func(s SyncStats) {
			once.Do(func() { first <- s })
			select {
			case syncs <- s:
			default: // only a wake-up for waitRules
			}
		}})
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
		if err := Cleanup(context.Background(), nil); err != nil {
			t.Error(err)
		}
	}()
	waitRules := func(what string, ok func(save string) bool) {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for {
			save := netnstest.Run(t, m.dump[0], m.dump[1:]...)
			if ok(save) {
				return
			}
			select {
			case <-syncs:
			case <-time.After(100 * time.Millisecond):
			case <-deadline:
				t.Fatalf("%s: rules are still\n%s", what, save)
			}
		}
	}
	ep1, ep2 := fmt.Sprintf(m.endpoint, "10.244.1.2", 8080), fmt.Sprintf(m.endpoint, "10.244.2.2", 8080)
	waitRules("both endpoints programmed", func(s string) bool {
		return strings.Contains(s, ep1) && strings.Contains(s, ep2)
	})
	if first := <-first; !first.Full || first.Ports != 1 {
		t.Errorf("first sync %+v, want a full sync of one port", first)
	}
	one := slice("default", "web", "web-1", 8080, readyEP("10.244.1.2", "n1"))
	if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, one, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRules("the removed endpoint gone", func(s string) bool {
		return strings.Contains(s, ep1) && !strings.Contains(s, ep2)
	})
	if err := client.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRules("the deleted service gone", func(s string) bool { return !strings.Contains(s, "10.96.0.20") })
	if _, err := client.CoreV1().Services("default").Create(ctx, svc("default", "web", "10.96.0.21"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRules("the new service programmed", func(s string) bool { return strings.Contains(s, m.newService) })
	// Someone flushes everything: the canary notices and the proxy
	// rewrites every chain and jump.
	for _, c := range m.flush {
		netnstest.Run(t, c[0], c[1:]...)
	}
	waitRules("rules restored after a flush", func(s string) bool {
		return strings.Contains(s, m.newService) && strings.Contains(s, m.restored)
	})
}

func TestResolveModePrefersNFTablesAndFallsBack(t *testing.T) {
	ok := func() error { return nil }
	noNFT := func() error { return errors.New("protocol not supported") }
	for _, c := range []struct {
		asked     string
		supported func() error
		want      string
		why       string
	}{
		{"", ok, ModeNFTables, "default"},
		{"", noNFT, ModeIPTables, "the kernel does not support nftables (protocol not supported)"},
		{ModeIPTables, ok, ModeIPTables, "configured"},
		{ModeNFTables, noNFT, ModeNFTables, "configured"}, // New then fails, naming the cause
	} {
		if got, why := ResolveMode(c.asked, c.supported); got != c.want || why != c.why {
			t.Errorf("ResolveMode(%q) = %s (%s), want %s (%s)", c.asked, got, why, c.want, c.why)
		}
	}
}

// TestSwitchingModeKeepsTheOldRulesUntilTheNewAreIn runs the iptables mode,
// stops it with its rules left in place (an agent with
// --keep-rules-on-shutdown), then runs the nftables mode over the same API:
// the iptables rules still serve the node when the nftables table is first
// written, and are gone right after, so the node's Services never go
// without rules while an agent changes mode.
func TestSwitchingModeKeepsTheOldRulesUntilTheNewAreIn(t *testing.T) {
	if !netnstest.Isolate(t) {
		return
	}
	if err := NFTSupported(); err != nil {
		t.Skipf("no nftables: %v", err)
	}
	defer func() {
		if err := Cleanup(context.Background(), nil); err != nil {
			t.Error(err)
		}
	}()
	client := fake.NewClientset(svc("default", "web", "10.96.0.20"), twoEndpoints())
	natRules := func() (string, error) {
		out, err := exec.Command("iptables-save", "-t", "nat").CombinedOutput()
		return string(out), err
	}
	runUntilFirstSync(t, client, ModeIPTables, nil)
	if s := netnstest.Run(t, "iptables-save", "-t", "nat"); !strings.Contains(s, "10.244.1.2:8080") {
		t.Fatalf("the iptables mode left no rules for the service:\n%s", s)
	}
	var atFirstSync string
	var atFirstSyncErr error
	runUntilFirstSync(t, client, ModeNFTables, func() { atFirstSync, atFirstSyncErr = natRules() })
	if atFirstSyncErr != nil {
		t.Fatal(atFirstSyncErr)
	}
	if !strings.Contains(atFirstSync, "10.244.1.2:8080") {
		t.Errorf("the iptables rules were gone before the nftables table was written:\n%s", atFirstSync)
	}
	if s := netnstest.Run(t, "nft", "list", "table", "ip", NFTTableName); !strings.Contains(s, "10.244.1.2") {
		t.Errorf("the nftables table lacks the service's endpoint:\n%s", s)
	}
	if s := netnstest.Run(t, "iptables-save", "-t", "nat"); strings.Contains(s, "KEELSON") {
		t.Errorf("the iptables mode's rules outlived the nftables mode's first sync:\n%s", s)
	}
}

// runUntilFirstSync runs a Proxier in mode over client until its first
// sync returned (onFirst, if set, runs inside that sync, once its rules are
// written, before the other mode's are removed), then stops it; the rules
// stay.
func runUntilFirstSync(t *testing.T, client *fake.Clientset, mode string, onFirst func()) {
	t.Helper()
	var once sync.Once
	p, stop := runTestProxier(t, client, Config{Mode: mode, OnSync: func(SyncStats) {
		if onFirst != nil {
			once.Do(onFirst)
		}
	}})
	for deadline := time.Now().Add(60 * time.Second); !p.otherModeRemoved.Load(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = stop()
			t.Fatalf("%s mode: no successful first sync in 60 s", mode)
		}
	}
	if err := stop(); err != nil {
		t.Error(err)
	}
}

// runTestProxier runs a Proxier over client with cfg, as node n1 of a
// cluster on 10.244.0.0/16 syncing at most every 50 ms; stop ends it and
// returns Run's error.
func runTestProxier(t *testing.T, client *fake.Clientset, cfg Config) (p *Proxier, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	factory := informers.NewSharedInformerFactory(client, 0)
	cfg.NodeName, cfg.ClusterCIDRs, cfg.MinSyncPeriod = "n1", []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}, 50*time.Millisecond
	p, err := New(cfg, factory.Core().V1().Services().Informer(), factory.Discovery().V1().EndpointSlices().Informer(), nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return p, func() error {
		cancel()
		factory.Shutdown()
		return <-done
	}
}
