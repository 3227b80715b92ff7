package plugins

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/e2e/harness"
)

// The opt-in shared mode: three built-in controllers served by one process
// still do their work, each shown as its own plugin, and the group reads
// with an identity of its own that may only read.
func TestPluginGroupServesItsMembersFromOneProcess(t *testing.T) {
	members := []string{"replicaset", "deployment", "endpointslice"}
	s := harness.StartServer(t, harness.ServerOptions{Plugins: members,
		Args: []string{"--plugin-group", "small=" + strings.Join(members, ",")}})
	dyn := dynamic.NewForConfigOrDie(s.RESTConfig(t))
	cs := s.Clientset(t)

	var pids []int64
	for _, m := range members {
		st := waitPlugin(t, dyn, m, func(st pluginStatus) bool { return st.State == "running" && st.Ready })
		if st.PID == 0 || st.Term == 0 || st.Restarts != 0 {
			t.Errorf("%s: status %+v lacks its pid or term, or restarted", m, st)
		}
		pids = append(pids, st.PID)
	}
	if pids[0] != pids[1] || pids[1] != pids[2] {
		t.Errorf("members run as PIDs %v, want one process", pids)
	}

	t.Run("keelson plugins lists every member", func(t *testing.T) {
		out, err := exec.Command(s.Bin, "plugins", "--kubeconfig", s.Kubeconfig()).CombinedOutput()
		if err != nil {
			t.Fatalf("keelson plugins: %v\n%s", err, out)
		}
		for _, m := range members {
			if !lineWith(string(out), m, "running", fmt.Sprint(pids[0])) {
				t.Errorf("keelson plugins shows no running line for %s with pid %d:\n%s", m, pids[0], out)
			}
		}
	})

	t.Run("the group's identity only reads", func(t *testing.T) {
		role, err := cs.RbacV1().ClusterRoles().Get(context.Background(), "keelson:plugin:small", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the group's read role: %v", err)
		}
		for _, r := range role.Rules {
			for _, v := range r.Verbs {
				if v != "get" && v != "list" && v != "watch" {
					t.Errorf("the group's identity may %s %v", v, r.Resources)
				}
			}
		}
		if !slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, "pods") }) {
			t.Errorf("the group's identity cannot read pods, which its members watch: %+v", role.Rules)
		}
	})

	t.Run("a Deployment rolls out and its Service gets endpoints", func(t *testing.T) {
		checkRolloutAndEndpoints(t, cs)
	})

	t.Run("every member still runs in the one process", func(t *testing.T) {
		for _, m := range members {
			st, err := readPlugin(context.Background(), dyn, m)
			if err != nil || st.PID != pids[0] || st.Restarts != 0 {
				t.Errorf("%s after the workload: %+v (%v), want pid %d and no restart", m, st, err, pids[0])
			}
		}
	})
}

// lineWith reports whether a line of out holds every one of words.
func lineWith(out string, words ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if slices.ContainsFunc(words, func(w string) bool { return !slices.Contains(f, w) }) {
			continue
		}
		return true
	}
	return false
}

// checkRolloutAndEndpoints creates a Deployment of two replicas and a
// Service for it, plays the kubelet (each pod Running, Ready, with an IP)
// and waits for the rollout and the Service's ready endpoints.
func checkRolloutAndEndpoints(t *testing.T, cs kubernetes.Interface) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := "grouped"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Pod admission needs the default ServiceAccount (the serviceaccount
	// plugin is not running here).
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web:1",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}}}},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}}}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The endpointslice controller reads each endpoint's node (its zone).
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a", Labels: map[string]string{corev1.LabelTopologyZone: "zone-a"}}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	go playKubelet(ctx, cs, ns, node.Name)

	var last string
	for end := time.Now().Add(deadline); ; time.Sleep(200 * time.Millisecond) {
		got, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err == nil && got.Status.ObservedGeneration == got.Generation && got.Status.UpdatedReplicas == 2 && got.Status.AvailableReplicas == 2 {
			break
		}
		if err == nil {
			last = fmt.Sprintf("%+v", got.Status)
		}
		if time.Now().After(end) {
			t.Fatalf("Deployment web did not roll out: %s (%v)", last, err)
		}
	}
	for end := time.Now().Add(deadline); ; time.Sleep(200 * time.Millisecond) {
		list, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
		var ready []string
		if err == nil {
			for _, sl := range list.Items {
				for _, e := range sl.Endpoints {
					if ptr.Deref(e.Conditions.Ready, false) && len(sl.Ports) == 1 && ptr.Deref(sl.Ports[0].Port, 0) == 8080 {
						ready = append(ready, e.Addresses...)
					}
				}
			}
		}
		if len(ready) == 2 {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("Service web has ready endpoints %v on port 8080, want 2 (%v)", ready, err)
		}
	}
}

// playKubelet binds every pod of ns to node and marks it Running and Ready
// with an address of its own (no scheduler or agent runs here), until ctx
// ends.
func playKubelet(ctx context.Context, cs kubernetes.Interface, ns, node string) {
	ips := map[types.UID]string{}
	for ctx.Err() == nil {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		for _, p := range podsOrNone(pods, err) {
			if p.Spec.NodeName == "" {
				_ = cs.CoreV1().Pods(ns).Bind(ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: p.Name},
					Target: corev1.ObjectReference{Kind: "Node", Name: node}}, metav1.CreateOptions{})
				continue
			}
			if p.Status.PodIP != "" {
				continue
			}
			if ips[p.UID] == "" {
				ips[p.UID] = fmt.Sprintf("10.244.0.%d", len(ips)+10)
			}
			now := metav1.Now()
			cond := func(c corev1.PodConditionType) corev1.PodCondition {
				return corev1.PodCondition{Type: c, Status: corev1.ConditionTrue, LastTransitionTime: now}
			}
			patch, _ := json.Marshal(map[string]any{"status": corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &now,
				PodIP: ips[p.UID], PodIPs: []corev1.PodIP{{IP: ips[p.UID]}},
				Conditions: []corev1.PodCondition{cond(corev1.PodReady), cond(corev1.ContainersReady)}}})
			_, _ = cs.CoreV1().Pods(ns).Patch(ctx, p.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func podsOrNone(l *corev1.PodList, err error) []corev1.Pod {
	if err != nil {
		return nil
	}
	return l.Items
}
