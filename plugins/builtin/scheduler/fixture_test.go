package scheduler_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/plugins/builtin/scheduler"
	"github.com/keelson/keelson/plugins/sdk"
)

// waitTimeout bounds every wait: generous, as the machine may be busy; no
// test asserts how long anything took.
const waitTimeout = 2 * time.Minute

// fixture is one test's slice of a shared server: its own namespace, the
// nodes it created, and a scheduler running in-process.
type fixture struct {
	t     *testing.T
	srv   *harness.Server
	cs    kubernetes.Interface
	ns    string
	nodes []string
}

var nsSeq atomic.Int64

func newFixture(t *testing.T, srv *harness.Server) *fixture {
	t.Helper()
	f := &fixture{t: t, srv: srv, cs: srv.Clientset(t), ns: fmt.Sprintf("sched-%d", nsSeq.Add(1))}
	ctx := context.Background()
	if _, err := f.cs.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns, Labels: map[string]string{"team": f.ns}}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", f.ns, err)
	}
	// No serviceaccount controller runs: admission needs the default
	// ServiceAccount before pods can be created.
	if _, err := f.cs.CoreV1().ServiceAccounts(f.ns).Create(ctx, &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the default ServiceAccount: %v", err)
	}
	t.Cleanup(f.cleanup)
	return f
}

// cleanup removes the test's pods at once (no kubelet would confirm a
// graceful deletion) and its nodes, so the next test starts empty.
func (f *fixture) cleanup() {
	ctx := context.Background()
	zero := metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}
	if err := f.cs.CoreV1().Pods(f.ns).DeleteCollection(ctx, zero, metav1.ListOptions{}); err != nil {
		f.t.Errorf("deleting the pods of %s: %v", f.ns, err)
	}
	for _, n := range f.nodes {
		if err := f.cs.CoreV1().Nodes().Delete(ctx, n, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			f.t.Errorf("deleting node %s: %v", n, err)
		}
	}
}

// runScheduler runs the plugin in this process with config (JSON, may be
// empty) until the test ends.
func (f *fixture) runScheduler(config string) {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	var once atomic.Bool
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() {
		done <- sdk.RunLocal(ctx, scheduler.Plugin(), sdk.LocalOptions{
			RESTConfig: f.srv.RESTConfig(f.t),
			Config:     json.RawMessage(config),
			Logger:     logger,
			Status: func(ok bool, _, _ string) {
				if ok && once.CompareAndSwap(false, true) {
					close(ready)
				}
			},
		})
	}()
	f.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.t.Errorf("scheduler returned: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		f.t.Fatalf("scheduler exited before it was ready: %v", err)
	case <-time.After(waitTimeout):
		f.t.Fatalf("scheduler not ready within %s", waitTimeout)
	}
}

type nodeOpt func(*v1.Node)

func labels(kv ...string) nodeOpt {
	return func(n *v1.Node) {
		for i := 0; i+1 < len(kv); i += 2 {
			n.Labels[kv[i]] = kv[i+1]
		}
	}
}

func taint(key, value string, effect v1.TaintEffect) nodeOpt {
	return func(n *v1.Node) {
		n.Spec.Taints = append(n.Spec.Taints, v1.Taint{Key: key, Value: value, Effect: effect})
	}
}

func capacity(cpu, memory string, pods int64) nodeOpt {
	return func(n *v1.Node) {
		n.Status.Allocatable = v1.ResourceList{
			v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse(memory),
			v1.ResourcePods: *resource.NewQuantity(pods, resource.DecimalSI),
		}
	}
}

func extended(name, qty string) nodeOpt {
	return func(n *v1.Node) { n.Status.Allocatable[v1.ResourceName(name)] = resource.MustParse(qty) }
}

func ready(status v1.ConditionStatus) nodeOpt {
	return func(n *v1.Node) {
		n.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: status, LastHeartbeatTime: metav1.Now()}}
	}
}

func cordoned(n *v1.Node) { n.Spec.Unschedulable = true }

// node creates a fake node (no kubelet): 4 cpu, 8 GiB, 110 pods, Ready, its
// hostname label set, then opts applied. The name is prefixed with the
// namespace so tests never share a node.
func (f *fixture) node(name string, opts ...nodeOpt) string {
	f.t.Helper()
	name = f.ns + "-" + name
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.LabelHostname: name}}}
	capacity("4", "8Gi", 110)(n)
	ready(v1.ConditionTrue)(n)
	for _, o := range opts {
		o(n)
	}
	n.Status.Capacity = n.Status.Allocatable
	created, err := f.cs.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatalf("creating node %s: %v", name, err)
	}
	f.nodes = append(f.nodes, name)
	// Admission taints every new node not-ready; the node lifecycle
	// controller (not running here) lifts the taint once the node reports
	// Ready, so the test does it.
	if isReady(created) && hasTaint(created, v1.TaintNodeNotReady) && !hasTaint(n, v1.TaintNodeNotReady) {
		created.Spec.Taints = n.Spec.Taints
		if _, err := f.cs.CoreV1().Nodes().Update(context.Background(), created, metav1.UpdateOptions{}); err != nil {
			f.t.Fatalf("lifting the not-ready taint of node %s: %v", name, err)
		}
	}
	return name
}

func isReady(n *v1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

func hasTaint(n *v1.Node, key string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key {
			return true
		}
	}
	return false
}

type podOpt func(*v1.Pod)

func requests(cpu, memory string) podOpt {
	return func(p *v1.Pod) {
		p.Spec.Containers[0].Resources.Requests = v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse(memory)}
	}
}

func podLabels(kv ...string) podOpt {
	return func(p *v1.Pod) {
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

func priority(class string) podOpt {
	return func(p *v1.Pod) { p.Spec.PriorityClassName = class }
}

// pod creates a pod with one container asking for nothing, then opts.
func (f *fixture) pod(name string, opts ...podOpt) *v1.Pod {
	f.t.Helper()
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns},
		Spec: v1.PodSpec{
			Containers:                    []v1.Container{{Name: "app", Image: "registry.invalid/app:1"}},
			TerminationGracePeriodSeconds: ptr.To[int64](30),
		},
	}
	for _, o := range opts {
		o(p)
	}
	created, err := f.cs.CoreV1().Pods(f.ns).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatalf("creating pod %s: %v", name, err)
	}
	return created
}

// waitPod polls the pod until cond holds and returns it.
func (f *fixture) waitPod(name, what string, cond func(*v1.Pod) bool) *v1.Pod {
	f.t.Helper()
	var last *v1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		p, err := f.cs.CoreV1().Pods(f.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		return cond(p), nil
	})
	if err != nil {
		f.t.Fatalf("pod %s/%s: %s: %v; last seen: nodeName=%q conditions=%+v", f.ns, name, what, err, nodeNameOf(last), conditionsOf(last))
	}
	return last
}

func nodeNameOf(p *v1.Pod) string {
	if p == nil {
		return ""
	}
	return p.Spec.NodeName
}

func conditionsOf(p *v1.Pod) []v1.PodCondition {
	if p == nil {
		return nil
	}
	return p.Status.Conditions
}

// bound waits until the pod is bound and returns its node.
func (f *fixture) bound(name string) string {
	f.t.Helper()
	return f.waitPod(name, "not bound", func(p *v1.Pod) bool { return p.Spec.NodeName != "" }).Spec.NodeName
}

// unschedulable waits for PodScheduled=False/Unschedulable and returns the
// condition's message.
func (f *fixture) unschedulable(name string) string {
	f.t.Helper()
	p := f.waitPod(name, "no PodScheduled=False condition", func(p *v1.Pod) bool {
		c := scheduledCondition(p)
		return c != nil && c.Status == v1.ConditionFalse && c.Reason == v1.PodReasonUnschedulable
	})
	if p.Spec.NodeName != "" {
		f.t.Fatalf("pod %s is bound to %s although unschedulable", name, p.Spec.NodeName)
	}
	return scheduledCondition(p).Message
}

func scheduledCondition(p *v1.Pod) *v1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == v1.PodScheduled {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// event waits for an events.k8s.io event about the pod with reason and a
// note containing want, and returns the note.
func (f *fixture) event(podName, reason, want string) string {
	f.t.Helper()
	var notes []string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		list, err := f.cs.EventsV1().Events(f.ns).List(ctx, metav1.ListOptions{
			FieldSelector: fields.Set{"regarding.name": podName, "reason": reason}.String(),
		})
		if err != nil {
			return false, nil
		}
		notes = notes[:0]
		for _, e := range list.Items {
			notes = append(notes, e.Note)
			if strings.Contains(e.Note, want) && validEvent(&e) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		f.t.Fatalf("no %s event for pod %s with %q: %v; notes seen: %q", reason, podName, want, err, notes)
	}
	for _, n := range notes {
		if strings.Contains(n, want) {
			return n
		}
	}
	return ""
}

func validEvent(e *eventsv1.Event) bool {
	return e.ReportingController == "default-scheduler" && e.Regarding.Kind == "Pod"
}

// neverBound asserts that the pod stays unbound while the scheduler has had
// the time to place pods created after it: it creates a sentinel pod that
// fits anywhere and waits for it to be bound first.
func (f *fixture) neverBound(name string, sentinel string, opts ...podOpt) {
	f.t.Helper()
	f.pod(sentinel, opts...)
	f.bound(sentinel)
	p, err := f.cs.CoreV1().Pods(f.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatalf("reading pod %s: %v", name, err)
	}
	if p.Spec.NodeName != "" {
		f.t.Fatalf("pod %s was bound to %s, want it left pending", name, p.Spec.NodeName)
	}
}

// forceDelete removes a pod at once, as a kubelet would after its grace
// period.
func (f *fixture) forceDelete(name string) {
	f.t.Helper()
	err := f.cs.CoreV1().Pods(f.ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	if err != nil && !errors.Is(err, context.Canceled) && !apierrors.IsNotFound(err) {
		f.t.Fatalf("deleting pod %s: %v", name, err)
	}
}
