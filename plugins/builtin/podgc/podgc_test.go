package podgc

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keelson/keelson/plugins/sdk"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type fixture struct {
	c      *controller
	client *fake.Clientset
	clock  *clocktesting.FakeClock
	mu     sync.Mutex
	// deleted and patched record the writes, by pod name.
	deleted []string
	patched map[string]map[string]any
}

// newFixture caches and stores objs (nodes in nodes, only in the API
// when apiOnly).
func newFixture(t *testing.T, threshold int, objs ...runtime.Object) *fixture {
	t.Helper()
	client := fake.NewClientset(objs...)
	clk := clocktesting.NewFakeClock(t0)
	f := &fixture{client: client, clock: clk, patched: map[string]map[string]any{}}
	f.c = newController(client, informers.NewSharedInformerFactory(client, 0), Config{TerminatedPodThreshold: threshold}, clk, slog.New(slog.DiscardHandler))
	for _, o := range objs {
		switch o := o.(type) {
		case *v1.Pod:
			_ = f.c.pods.Add(o)
		case *v1.Node:
			_ = f.c.nodes.Add(o)
		}
	}
	client.PrependReactor("delete", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		d := a.(k8stesting.DeleteAction)
		o := d.GetDeleteOptions()
		if o.GracePeriodSeconds == nil || *o.GracePeriodSeconds != 0 || o.Preconditions == nil || o.Preconditions.UID == nil {
			t.Errorf("delete of %s with options %+v, want grace period 0 and a UID precondition", d.GetName(), o)
		}
		f.mu.Lock()
		f.deleted = append(f.deleted, d.GetName())
		f.mu.Unlock()
		return false, nil, nil
	})
	client.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.PatchAction)
		if p.GetSubresource() != "status" || p.GetPatchType() != types.StrategicMergePatchType {
			t.Errorf("patch of %s/%s (%s), want a strategic merge patch of status", p.GetName(), p.GetSubresource(), p.GetPatchType())
		}
		var m map[string]any
		if err := json.Unmarshal(p.GetPatch(), &m); err != nil {
			t.Error(err)
		}
		f.mu.Lock()
		f.patched[p.GetName()] = m
		f.mu.Unlock()
		return false, nil, nil
	})
	return f
}

func pod(name, node string, phase v1.PodPhase, age time.Duration, mutate ...func(*v1.Pod)) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name + "-uid"), Generation: 2,
			CreationTimestamp: metav1.NewTime(t0.Add(-age))},
		Spec:   v1.PodSpec{NodeName: node},
		Status: v1.PodStatus{Phase: phase},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func terminating(p *v1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: t0} }
func evicted(p *v1.Pod)     { p.Status.Reason = "Evicted" }

func node(name string, ready bool, taints ...v1.Taint) *v1.Node {
	st := v1.ConditionFalse
	if ready {
		st = v1.ConditionTrue
	}
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.NodeSpec{Taints: taints},
		Status: v1.NodeStatus{Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: st}}}}
}

var outOfService = v1.Taint{Key: v1.TaintNodeOutOfService, Effect: v1.TaintEffectNoExecute}

func (f *fixture) pass(t *testing.T) {
	t.Helper()
	res, err := f.c.reconcile(context.Background(), passKey)
	if err != nil || res.RequeueAfter != checkPeriod {
		t.Fatalf("reconcile = %+v, %v; want a requeue after %s", res, err, checkPeriod)
	}
}

func (f *fixture) deletedNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.deleted)
	slices.Sort(out)
	return out
}

func TestCollect(t *testing.T) {
	cases := []struct {
		name      string
		threshold int
		objs      []runtime.Object
		want      []string
	}{
		{"finished pods beyond the threshold, oldest first", 2, []runtime.Object{node("n", true),
			pod("old", "n", v1.PodSucceeded, 3*time.Hour), pod("mid", "n", v1.PodFailed, 2*time.Hour), pod("new", "n", v1.PodSucceeded, time.Hour),
			pod("running", "n", v1.PodRunning, 4*time.Hour)}, []string{"old"}},
		{"evicted pods go before older ones", 2, []runtime.Object{node("n", true),
			pod("old", "n", v1.PodSucceeded, 3*time.Hour), pod("mid", "n", v1.PodFailed, 2*time.Hour), pod("ev", "n", v1.PodFailed, time.Hour, evicted)}, []string{"ev"}},
		{"same age: by name", 1, []runtime.Object{node("n", true),
			pod("b", "n", v1.PodSucceeded, time.Hour), pod("a", "n", v1.PodSucceeded, time.Hour)}, []string{"a"}},
		{"threshold 0 keeps every finished pod", 0, []runtime.Object{node("n", true),
			pod("a", "n", v1.PodSucceeded, time.Hour), pod("b", "n", v1.PodFailed, time.Hour)}, nil},
		{"terminating on a NotReady out-of-service node", 10, []runtime.Object{node("down", false, outOfService), node("tainted-ready", true, outOfService), node("notready", false),
			pod("a", "down", v1.PodRunning, time.Hour, terminating), pod("b", "down", v1.PodRunning, time.Hour),
			pod("c", "tainted-ready", v1.PodRunning, time.Hour, terminating), pod("d", "notready", v1.PodRunning, time.Hour, terminating)}, []string{"a"}},
		{"unscheduled terminating", 10, []runtime.Object{pod("a", "", v1.PodPending, time.Hour, terminating), pod("b", "", v1.PodPending, time.Hour)}, []string{"a"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.threshold, tc.objs...)
			f.pass(t)
			if got := f.deletedNames(); !slices.Equal(got, tc.want) {
				t.Errorf("deleted %v, want %v", got, tc.want)
			}
		})
	}
}

// TestOrphanedQuarantine: a pod on a node missing from the cache is
// deleted only once the node has been missing for the quarantine and a
// live read says NotFound; a node the API still has saves its pods.
func TestOrphanedQuarantine(t *testing.T) {
	cachedLate := node("late", true) // in the API, not yet in the cache
	f := newFixture(t, 10, pod("a", "gone", v1.PodRunning, time.Hour), pod("b", "gone", v1.PodSucceeded, time.Hour),
		pod("c", "late", v1.PodRunning, time.Hour), pod("d", "here", v1.PodRunning, time.Hour), node("here", true))
	if err := f.client.Tracker().Add(cachedLate); err != nil {
		t.Fatal(err)
	}
	f.pass(t)
	if got := f.deletedNames(); len(got) != 0 {
		t.Fatalf("deleted %v before the quarantine ended", got)
	}
	f.clock.Step(quarantine - time.Second)
	f.pass(t)
	if got := f.deletedNames(); len(got) != 0 {
		t.Fatalf("deleted %v before the quarantine ended", got)
	}
	f.clock.Step(time.Second)
	f.pass(t)
	if got, want := f.deletedNames(), []string{"a", "b"}; !slices.Equal(got, want) {
		t.Fatalf("deleted %v, want %v", got, want)
	}
	// The running orphan was failed with DisruptionTarget first; the
	// finished one was not touched.
	st, _ := f.patched["a"]["status"].(map[string]any)
	conds, _ := st["conditions"].([]any)
	if st["phase"] != "Failed" || st["observedGeneration"] != float64(2) || len(conds) != 1 {
		t.Fatalf("patch of a: %v", f.patched["a"])
	}
	cond := conds[0].(map[string]any)
	if cond["type"] != "DisruptionTarget" || cond["status"] != "True" || cond["reason"] != "DeletionByPodGC" ||
		cond["message"] != "PodGC: node no longer exists" || cond["lastTransitionTime"] != t0.Add(quarantine).Format(time.RFC3339) {
		t.Errorf("condition %v", cond)
	}
	if uid := f.patched["a"]["metadata"].(map[string]any)["uid"]; uid != "a-uid" {
		t.Errorf("patch carries uid %v, want the pod's", uid)
	}
	if _, ok := f.patched["b"]; ok {
		t.Errorf("finished pod b patched: %v", f.patched["b"])
	}
}

// TestFailBeforeDelete: a running pod is set Failed (no condition) before
// its deletion; a patch refused because the pod is another one by now
// (UID conflict) stops there.
func TestFailBeforeDelete(t *testing.T) {
	f := newFixture(t, 10, node("down", false, outOfService),
		pod("a", "down", v1.PodRunning, time.Hour, terminating), pod("b", "down", v1.PodRunning, time.Hour, terminating))
	f.client.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.PatchAction).GetName() == "b" {
			return true, nil, apierrors.NewConflict(v1.Resource("pods"), "b", fmt.Errorf("UID in precondition differs"))
		}
		return false, nil, nil
	})
	f.pass(t)
	st := f.patched["a"]["status"].(map[string]any)
	if st["phase"] != "Failed" || st["conditions"] != nil {
		t.Errorf("patch of a: %v, want phase Failed and no condition", f.patched["a"])
	}
	if got := f.deletedNames(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("deleted %v, want only a", got)
	}
}

func TestConfig(t *testing.T) {
	cases := []struct {
		raw     string
		want    int
		wantErr string
	}{
		{``, 12500, ""},
		{`{"terminatedPodThreshold": 0}`, 0, ""},
		{`{"terminatedPodThreshold": 100}`, 100, ""},
		{`{"terminatedPodThreshold": -1}`, 0, "terminatedPodThreshold is -1"},
		{`{"terminatedPodGCThreshold": 5}`, 0, `unknown field "terminatedPodGCThreshold"`},
	}
	for _, tc := range cases {
		cfg, err := decodeConfig(sdk.Env{Config: json.RawMessage(tc.raw)})
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want %q", tc.raw, err, tc.wantErr)
			}
			continue
		}
		if err != nil || cfg.TerminatedPodThreshold != tc.want {
			t.Errorf("%s: %+v, %v; want threshold %d", tc.raw, cfg, err, tc.want)
		}
	}
}
