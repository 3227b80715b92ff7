package scheduler_test

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/keelson/keelson/e2e/harness"
)

var pluginGVR = schema.GroupVersionResource{Group: "keelson.io", Version: "v1alpha1", Resource: "plugins"}

// TestSchedulerPluginProcess runs the scheduler the way a server does: as
// the built-in plugin process the host starts on the leader, with its own
// identity and the ClusterRole its rules declare, and its configuration
// from --plugin-config.
func TestSchedulerPluginProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts keelson servers")
	}
	t.Run("BindsPods", func(t *testing.T) {
		srv := harness.StartServer(t, harness.ServerOptions{Plugins: []string{"scheduler"}, Args: []string{
			"--plugin-config", `scheduler={"percentageOfNodesToScore": 50, "scores": {"NodeResourcesBalancedAllocation": 0}}`,
		}})
		waitPluginState(t, srv, "running", "")
		f := newFixture(t, srv)
		f.node("a")
		f.node("b")
		f.pod("p", requests("100m", "64Mi"))
		f.bound("p")
		f.event("p", "Scheduled", "Successfully assigned "+f.ns+"/p to ")
		f.pod("too-big", requests("64", "1Gi"))
		if got := f.unschedulable("too-big"); !strings.HasPrefix(got, "0/2 nodes are available: 2 Insufficient cpu.") {
			t.Fatalf("message %q", got)
		}
		// Preemption uses the rest of the plugin's permissions: the
		// victim's status and its deletion.
		createPriorityClasses(t, srv)
		f.pod("low-a", requests("3", "1Gi"), priority("low"))
		f.pod("low-b", requests("3", "1Gi"), priority("low"))
		f.bound("low-a")
		f.bound("low-b")
		f.pod("high", requests("3", "1Gi"), priority("high"))
		nominated := f.waitPod("high", "not nominated", func(p *v1.Pod) bool { return p.Status.NominatedNodeName != "" }).Status.NominatedNodeName
		victim := "low-a"
		if f.bound("low-b") == nominated {
			victim = "low-b"
		}
		f.waitPod(victim, "not evicted", func(p *v1.Pod) bool { return p.DeletionTimestamp != nil && disruptionTarget(p) != nil })
		f.forceDelete(victim)
		if got := f.bound("high"); got != nominated {
			t.Fatalf("preemptor went to %s, nominated to %s", got, nominated)
		}
	})
	t.Run("RefusesBadConfigNamingTheField", func(t *testing.T) {
		srv := harness.StartServer(t, harness.ServerOptions{Plugins: []string{"scheduler"}, Args: []string{
			"--plugin-config", `scheduler={"percentageOfNodesToScore": 500}`,
		}})
		waitPluginState(t, srv, "", "percentageOfNodesToScore: must be between 0 (adaptive) and 100, got 500")
	})
}

// waitPluginState polls the scheduler's Plugin object until its state is
// state (if given) and its last error contains errPart (if given).
func waitPluginState(t *testing.T, srv *harness.Server, state, errPart string) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(srv.RESTConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	var last map[string]any
	err = wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		obj, err := dyn.Resource(pluginGVR).Get(ctx, "scheduler", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last, _, _ = unstructured.NestedMap(obj.Object, "status")
		gotState, _, _ := unstructured.NestedString(obj.Object, "status", "state")
		gotErr, _, _ := unstructured.NestedString(obj.Object, "status", "lastError")
		return (state == "" || gotState == state) && (errPart == "" || strings.Contains(gotErr, errPart)), nil
	})
	if err != nil {
		t.Fatalf("scheduler plugin: want state %q and an error with %q; last status %v", state, errPart, last)
	}
}
