package scheduler_test

import (
	"strconv"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/e2e/harness"
)

// TestScheduler runs the scheduler against a real keelson server with fake
// nodes registered through the API. The subtests share the server and run
// one after the other, each with its own namespace, nodes and scheduler.
func TestScheduler(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a keelson server")
	}
	srv := harness.StartServer(t, harness.ServerOptions{})

	t.Run("SpreadsPodsOverEqualNodes", func(t *testing.T) {
		f := newFixture(t, srv)
		a, b, c := f.node("a"), f.node("b"), f.node("c")
		f.runScheduler("")
		for i := range 6 {
			f.pod(name("p", i), requests("100m", "128Mi"))
		}
		perNode := map[string]int{}
		for i := range 6 {
			perNode[f.bound(name("p", i))]++
		}
		for _, n := range []string{a, b, c} {
			if perNode[n] != 2 {
				t.Fatalf("pods per node = %v, want 2 on each of %s, %s, %s", perNode, a, b, c)
			}
		}
		f.event("p-0", "Scheduled", "Successfully assigned "+f.ns+"/p-0 to ")
	})

	t.Run("UnschedulableMessageListsReasons", func(t *testing.T) {
		f := newFixture(t, srv)
		f.node("small", capacity("1", "8Gi", 110))
		f.node("tainted-1", taint("dedicated", "db", v1.TaintEffectNoSchedule))
		f.node("tainted-2", taint("dedicated", "db", v1.TaintEffectNoExecute))
		f.runScheduler("")
		f.pod("big", requests("2", "1Gi"))
		want := "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint(s). preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
		if got := f.unschedulable("big"); got != want {
			t.Fatalf("PodScheduled message:\n got %q\nwant %q", got, want)
		}
		f.event("big", "FailedScheduling", want)
	})
}

func name(prefix string, i int) string { return prefix + "-" + strconv.Itoa(i) }
