// Package nodes tests node liveness, node IPAM and node lifecycle end to
// end: real keelson servers running the nodeipam and nodelifecycle plugins
// as plugin processes, and simulated agents (test-process members of the
// gossip pool, and Node objects the test writes as an agent would).
package nodes

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/agent/gossip"
	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/internal/nodehealth"
	"github.com/keelson/keelson/internal/serfpool"
)

// deadline bounds every wait; it is a hang guard, not a timing claim.
const deadline = 3 * time.Minute

func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	end := time.Now().Add(deadline)
	last := ""
	for time.Now().Before(end) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last seen: %s", what, last)
}

// agentNode registers a Node as an agent does at start: created, then its
// status posted with Ready=True.
func agentNode(t *testing.T, cs kubernetes.Interface, name, zone string) {
	t.Helper()
	ctx := context.Background()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelTopologyZone: zone}}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating node %s: %v", name, err)
	}
	// Controllers may change the Node in between (taints, pod CIDRs).
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		n.Status.Conditions = []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", LastHeartbeatTime: now, LastTransitionTime: now},
		}
		_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("posting the status of node %s: %v", name, err)
	}
}

// boundPod creates a running, ready pod on node, tolerating not-ready and
// unreachable for seconds (DefaultTolerationSeconds admission would give
// 300).
func boundPod(t *testing.T, cs kubernetes.Interface, name, node string, seconds int64) {
	t.Helper()
	ctx := context.Background()
	tol := func(key string) corev1.Toleration {
		return corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To(seconds)}
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}},
			Tolerations: []corev1.Toleration{tol(corev1.TaintNodeNotReady), tol(corev1.TaintNodeUnreachable)}},
	}
	p, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s: %v", name, err)
	}
	now := metav1.Now()
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}
	if _, err := cs.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("posting the status of pod %s: %v", name, err)
	}
}

// defaultServiceAccount creates what the serviceaccount controller would:
// pods cannot be created in a namespace without it.
func defaultServiceAccount(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	eventually(t, "the default ServiceAccount", func() (bool, string) {
		_, err := cs.CoreV1().ServiceAccounts("default").Create(context.Background(),
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
		return err == nil || apierrors.IsAlreadyExists(err), fmt.Sprint(err)
	})
}

func readyOf(cs kubernetes.Interface, name string) (corev1.NodeCondition, *corev1.Node, error) {
	n, err := cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return corev1.NodeCondition{}, nil, err
	}
	if c := nodehealth.Condition(n, corev1.NodeReady); c != nil {
		return *c, n, nil
	}
	return corev1.NodeCondition{}, n, nil
}

func taintsOf(n *corev1.Node) string {
	var out []string
	for _, t := range n.Spec.Taints {
		out = append(out, t.Key+":"+string(t.Effect))
	}
	return strings.Join(out, ",")
}

func hasTaint(n *corev1.Node, key string, effect corev1.TaintEffect) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key && t.Effect == effect {
			return true
		}
	}
	return false
}

// simulatedAgent makes the test process a node's member of the cluster's
// gossip pool, as `keelson agent` does with agent/gossip.
func simulatedAgent(t *testing.T, name string, servers ...*harness.Server) *gossip.Member {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(servers[0].DataDir, "token"))
	if err != nil {
		t.Fatalf("reading the cluster secret: %v", err)
	}
	// A real agent receives the gossip key with its node credentials.
	key, err := serfpool.GossipKey(strings.TrimSpace(string(token)))
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, s := range servers {
		addrs = append(addrs, s.SerfAddr())
	}
	m, err := gossip.Join(context.Background(), gossip.Config{
		NodeName: name, Zone: "zone-a", KubeletAddr: "127.0.0.1:10250", GossipKey: key,
		Servers: addrs, BindAddr: "127.0.0.1:0", Logger: testLogger(t, name),
	})
	if err != nil {
		t.Fatalf("joining the gossip pool as %s: %v", name, err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func testLogger(t *testing.T, name string) *slog.Logger {
	if os.Getenv("NODES_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil)).With("agent", name)
}
