package serfpool

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/serf/serf"
)

func members(name, ip string, port uint16) []*serf.Member {
	return []*serf.Member{{Name: name, Addr: net.ParseIP(ip), Port: port, Status: serf.StatusNone}}
}

func TestDuplicateNodeNameStopsTheJoiner(t *testing.T) {
	ctx := context.Background()
	first := startPool(t, ctx, fastConfig(t, "vm"))
	other := startPool(t, ctx, fastConfig(t, "other"))
	if err := other.Join(first.Addr()); err != nil {
		t.Fatalf("a distinct name joins: %v", err)
	}

	// A second "vm" joins through "other": the merge carries the first vm.
	cfg := fastConfig(t, "vm")
	cfg.Join = []string{other.Addr()}
	dup := startPool(t, ctx, cfg)
	var err error
	select {
	case err = <-dup.Fatal():
	case <-time.After(time.Minute): // deadlock guard, not a timing claim
		t.Fatal("the duplicate's join never reported the conflict")
	}
	var nce *NameConflictError
	if !errors.As(err, &nce) || nce.OtherAddr != first.Addr() || nce.OtherRole != "server" {
		t.Fatalf("fatal error %v; want a NameConflictError naming the first vm at %s", err, first.Addr())
	}
	for _, want := range []string{`node name "vm"`, first.Addr(), "--node-name"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// The first vm keeps its gossip: it never became a member twice.
	select {
	case err := <-first.Fatal():
		t.Errorf("the first holder of the name got a fatal error: %v", err)
	default:
	}
	for _, m := range other.Members() {
		if m.Name == "vm" && m.SerfAddr != first.Addr() {
			t.Errorf("the pool took in the duplicate: %+v", m)
		}
	}
}

func TestStaleRecordOfOwnNameIsNoConflict(t *testing.T) {
	g := newConflictGuard("vm")
	g.setLocal("127.0.0.1:7000")
	g.probe = func(string) bool { return false } // the old address is gone
	if err := g.NotifyMerge(members("vm", "127.0.0.1", 7001)); err != nil {
		t.Errorf("a dead record of our own name at another address: %v; want no conflict", err)
	}
	g.probe = func(string) bool { return true }
	if err := g.NotifyMerge(members("vm", "127.0.0.1", 7000)); err != nil {
		t.Errorf("our own record: %v; want no conflict", err)
	}
	if err := g.NotifyMerge(members("vm", "127.0.0.1", 7001)); err == nil {
		t.Error("a live member at another address with our name: no conflict reported")
	}
}
