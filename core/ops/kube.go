package ops

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// pluginsGVR is the resource the plugin hosts publish each plugin's state
// in (plugins/host).
var pluginsGVR = schema.GroupVersionResource{Group: "keelson.io", Version: "v1alpha1", Resource: "plugins"}

// NodeStatus is one Node as the Kubernetes API reports it.
type NodeStatus struct {
	Name string `json:"name"`
	// Ready is the Ready condition's status: True, False or Unknown.
	Ready   string `json:"ready"`
	Reason  string `json:"reason,omitempty"`
	Version string `json:"version"`
	// Gossip is the node's status in the gossip pool, empty when the pool
	// does not know it (a node that heartbeats through its Lease).
	Gossip string `json:"gossip,omitempty"`
}

// PluginState is one plugin as its host published it.
type PluginState struct {
	Name string `json:"name"`
	// Node is set for a node plugin's copy on that node.
	Node      string `json:"node,omitempty"`
	State     string `json:"state"`
	Ready     bool   `json:"ready"`
	Restarts  int64  `json:"restarts"`
	LastError string `json:"lastError,omitempty"`
}

// KubeStatus is what cluster status reads from the Kubernetes API.
type KubeStatus struct {
	Nodes   []NodeStatus  `json:"nodes"`
	Plugins []PluginState `json:"plugins"`
}

// ReadKube lists the Nodes and the plugins' published states; gossip, when
// given, fills each node's gossip status by name.
func ReadKube(ctx context.Context, kc kubernetes.Interface, dc dynamic.Interface, gossip []GossipMember) (*KubeStatus, error) {
	nodes, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	byName := map[string]string{}
	for _, m := range gossip {
		byName[m.Name] = m.Status
	}
	out := &KubeStatus{}
	for _, n := range nodes.Items {
		ns := NodeStatus{Name: n.Name, Ready: string(corev1.ConditionUnknown), Version: n.Status.NodeInfo.KubeletVersion, Gossip: byName[n.Name]}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				ns.Ready, ns.Reason = string(c.Status), c.Reason
			}
		}
		out.Nodes = append(out.Nodes, ns)
	}
	plugins, err := dc.Resource(pluginsGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing plugins.keelson.io: %w", err)
	}
	for _, p := range plugins.Items {
		out.Plugins = append(out.Plugins, pluginState(p))
	}
	slices.SortFunc(out.Plugins, func(a, b PluginState) int {
		return strings.Compare(a.Name+"/"+a.Node, b.Name+"/"+b.Node)
	})
	return out, nil
}

func pluginState(p unstructured.Unstructured) PluginState {
	str := func(f string) string { v, _, _ := unstructured.NestedString(p.Object, "status", f); return v }
	ready, _, _ := unstructured.NestedBool(p.Object, "status", "ready")
	restarts, _, _ := unstructured.NestedInt64(p.Object, "status", "restarts")
	name := p.GetName()
	node := str("node")
	if node != "" {
		// A node plugin's copy is named <plugin>.<node> (host.NodeStatusName).
		name = strings.TrimSuffix(name, "."+node)
	}
	return PluginState{Name: name, Node: node, State: str("state"), Ready: ready, Restarts: restarts, LastError: str("lastError")}
}
