package security

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/nodeagent"
	"github.com/keelson/keelson/internal/testnet"
	"github.com/keelson/keelson/internal/testproc"
)

const controlPlaneTaint = "node-role.kubernetes.io/control-plane"

// startServerNode starts a server that runs its own agent (node e2e-0),
// with the scheduler, node IPAM (a pod CIDR makes the node Ready) and node
// lifecycle (which lifts the not-ready taint), and waits for it to register. The pods' bridge,
// cgroups, mounts and shims are removed when the test ends.
func startServerNode(t *testing.T, extra ...string) (*harness.Server, kubernetes.Interface) {
	t.Helper()
	nodeagent.Require(t)
	bridge := testnet.BridgeName()
	cgroupRoot := "/keelson-e2e-security-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	srv := harness.NewServer(t, harness.ServerOptions{Plugins: []string{"scheduler", "nodelifecycle", "nodeipam"}, Args: append([]string{
		"--disable-agent=false",
		"--kubelet-address", "127.0.0.1",
		"--kubelet-port", strconv.Itoa(harness.FreePort(t)),
		"--cni-bridge", bridge,
		"--cni-masquerade=false",
		"--disable-service-network",
		"--cgroup-root", cgroupRoot,
	}, extra...)})
	// Registered before the start: a server that fails to start may have
	// made the bridge and the cgroups already.
	var client kubernetes.Interface
	t.Cleanup(func() {
		if client != nil {
			ctx := context.Background()
			zero := int64(0)
			if list, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err == nil {
				for _, p := range list.Items {
					_ = client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
				}
			}
		}
		srv.Kill()
		nodeagent.KillShims(t, filepath.Join(srv.DataDir, "agent", "containerd", "containerd.sock"))
		nodeagent.UnmountUnder(t, srv.DataDir)
		if err := testnet.DeleteLink(bridge); err != nil {
			t.Error(err)
		}
		testproc.RemoveCgroupTree(cgroupRoot)
	})
	srv.Start(t)
	client = srv.Clientset(t)
	harness.Eventually(t, 3*time.Minute, "the server registers its node", func() (bool, string) {
		_, err := client.CoreV1().Nodes().Get(context.Background(), "e2e-0", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	return srv, client
}

func namespace(t *testing.T, client kubernetes.Interface, name string, labels map[string]string) string {
	t.Helper()
	ns := &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := client.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defaultServiceAccount(t, client, name)
	return name
}

// defaultServiceAccount creates the namespace's default ServiceAccount,
// which admission needs before any pod: these servers run no serviceaccount
// plugin.
func defaultServiceAccount(t *testing.T, client kubernetes.Interface, ns string) {
	t.Helper()
	sa := &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	if _, err := client.CoreV1().ServiceAccounts(ns).Create(context.Background(), sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func pod(name string, mutate func(*v1.Pod)) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.PodSpec{
			AutomountServiceAccountToken: new(bool),
			Containers:                   []v1.Container{{Name: "app", Image: "keelson.test/absent:1", Command: []string{"sleep", "3600"}}},
		},
	}
	if mutate != nil {
		mutate(p)
	}
	return p
}

// TestServerNodeIsTainted: a server's node carries the control-plane
// taint, so the scheduler places only pods that tolerate it there.
func TestServerNodeIsTainted(t *testing.T) {
	_, client := startServerNode(t)
	ctx := context.Background()
	node, err := client.CoreV1().Nodes().Get(ctx, "e2e-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tainted := false
	for _, taint := range node.Spec.Taints {
		tainted = tainted || taint.Key == controlPlaneTaint && taint.Effect == v1.TaintEffectNoSchedule
	}
	if !tainted {
		t.Fatalf("server node e2e-0 has taints %v, not %s:NoSchedule", node.Spec.Taints, controlPlaneTaint)
	}
	ns := namespace(t, client, "taint", nil)
	if _, err := client.CoreV1().Pods(ns).Create(ctx, pod("plain", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tolerating := pod("tolerating", func(p *v1.Pod) {
		p.Spec.Tolerations = []v1.Toleration{{Key: controlPlaneTaint, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule}}
	})
	if _, err := client.CoreV1().Pods(ns).Create(ctx, tolerating, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 2*time.Minute, "the tolerating pod is bound to the server node", func() (bool, string) {
		p, err := client.CoreV1().Pods(ns).Get(ctx, "tolerating", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		n, _ := client.CoreV1().Nodes().Get(ctx, "e2e-0", metav1.GetOptions{})
		return p.Spec.NodeName == "e2e-0", fmt.Sprintf("nodeName=%q conditions=%v node taints=%v", p.Spec.NodeName, p.Status.Conditions, n.Spec.Taints)
	})
	// The plain pod was tried (the scheduler saw both) and stays unbound.
	harness.Eventually(t, 2*time.Minute, "the plain pod is reported unschedulable for the taint", func() (bool, string) {
		p, err := client.CoreV1().Pods(ns).Get(ctx, "plain", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if p.Spec.NodeName != "" {
			t.Fatalf("pod without a toleration was bound to %s", p.Spec.NodeName)
		}
		for _, c := range p.Status.Conditions {
			// kube-scheduler's wording: it does not name the taint.
			if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse && strings.Contains(c.Message, "1 node(s) had untolerated taint(s)") {
				return true, ""
			}
		}
		return false, fmt.Sprint(p.Status.Conditions)
	})
}

// TestSchedulableControlPlaneFlag: --schedulable-control-plane (what make
// run passes) registers the server's node without the taint.
func TestSchedulableControlPlaneFlag(t *testing.T) {
	_, client := startServerNode(t, "--schedulable-control-plane")
	node, err := client.CoreV1().Nodes().Get(context.Background(), "e2e-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, taint := range node.Spec.Taints {
		if taint.Key == controlPlaneTaint {
			t.Fatalf("server node e2e-0 is tainted %v despite --schedulable-control-plane", node.Spec.Taints)
		}
	}
}

// TestPodSecurityBaselineByDefault: in a namespace without Pod Security
// labels, privileged, host-namespace and hostPath pods are refused (the
// hostPath of a server's data dir would hand out the cluster CA key);
// kube-system is exempt and a namespace may opt out with its label.
func TestPodSecurityBaselineByDefault(t *testing.T) {
	srv := harness.StartServer(t, harness.ServerOptions{})
	client := srv.Clientset(t)
	ctx := context.Background()
	ns := namespace(t, client, "baseline", nil)
	yes := true
	refused := map[string]func(*v1.Pod){
		"privileged": func(p *v1.Pod) {
			p.Spec.Containers[0].SecurityContext = &v1.SecurityContext{Privileged: &yes}
		},
		"hostpath": func(p *v1.Pod) {
			p.Spec.Volumes = []v1.Volume{{Name: "keys", VolumeSource: v1.VolumeSource{HostPath: &v1.HostPathVolumeSource{Path: srv.DataDir}}}}
			p.Spec.Containers[0].VolumeMounts = []v1.VolumeMount{{Name: "keys", MountPath: "/keys"}}
		},
		"hostnetwork": func(p *v1.Pod) { p.Spec.HostNetwork = true },
	}
	for name, mutate := range refused {
		_, err := client.CoreV1().Pods(ns).Create(ctx, pod(name, mutate), metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `violates PodSecurity "baseline:latest"`) {
			t.Errorf("%s pod in a baseline namespace: got %v, want a PodSecurity baseline refusal", name, err)
		}
	}
	if _, err := client.CoreV1().Pods(ns).Create(ctx, pod("plain", nil), metav1.CreateOptions{}); err != nil {
		t.Errorf("a baseline pod is refused: %v", err)
	}
	defaultServiceAccount(t, client, "kube-system")
	if _, err := client.CoreV1().Pods("kube-system").Create(ctx, pod("privileged", refused["privileged"]), metav1.CreateOptions{}); err != nil {
		t.Errorf("kube-system is not exempt: %v", err)
	}
	priv := namespace(t, client, "opted-out", map[string]string{"pod-security.kubernetes.io/enforce": "privileged"})
	if _, err := client.CoreV1().Pods(priv).Create(ctx, pod("hostpath", refused["hostpath"]), metav1.CreateOptions{}); err != nil {
		t.Errorf("a namespace labelled privileged refuses a hostPath pod: %v", err)
	}
}

// TestPodSecurityConfigured: the server config's level replaces the default.
func TestPodSecurityConfigured(t *testing.T) {
	srv := harness.StartServer(t, harness.ServerOptions{Args: []string{"--pod-security-enforce", "restricted"}})
	client := srv.Clientset(t)
	ns := namespace(t, client, "restricted", nil)
	_, err := client.CoreV1().Pods(ns).Create(context.Background(), pod("plain", nil), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `violates PodSecurity "restricted:latest"`) {
		t.Fatalf("a pod that is not restricted: got %v, want a restricted refusal", err)
	}
}
