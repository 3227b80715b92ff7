package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/keelson/keelson/core/pki"
	"github.com/keelson/keelson/internal/nodeproof"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
)

// NodeKeyAnnotation on a Node records the hex SHA-256 of the public key its
// client certificates are issued for. The supervisor sets it on the first
// request for the name (creating the Node if need be) and refuses the name
// to any other key while it is there: deleting the Node releases the name.
// Living on the Node, the binding is replicated with it, so every server
// agrees; NodeRestriction keeps other nodes from touching it.
const NodeKeyAnnotation = nodeproof.KeyAnnotation

// NodeAddressesAnnotation on a Node lists, comma-separated, the IPs of the
// last serving certificate issued to it: the node's addresses before its
// agent has reported any, which no other node may claim.
const NodeAddressesAnnotation = "keelson.dev/serving-ips"

// errNodeBound refuses a node name bound to another key.
var errNodeBound = errors.New("is registered with another key")

// errServerName refuses an agent token a server's node name.
var errServerName = errors.New("an agent token may not register it")

// nodeIdentities decides which node credentials the supervisor may issue.
type nodeIdentities struct {
	kube kubernetes.Interface
	// serviceNets are the service ranges: no node address is in them.
	serviceNets []*net.IPNet
	// servers lists the servers' names and addresses, which an agent may
	// not claim.
	servers func() (names []string, ips []net.IP)
}

func newNodeIdentities(kube kubernetes.Interface, serviceCIDR string, servers func() ([]string, []net.IP)) (*nodeIdentities, error) {
	n := &nodeIdentities{kube: kube, servers: servers}
	for _, c := range strings.Split(serviceCIDR, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		_, ipnet, err := net.ParseCIDR(c)
		if err != nil {
			return nil, fmt.Errorf("apiServer.serviceCIDR (--service-cidr) %q: %w", c, err)
		}
		n.serviceNets = append(n.serviceNets, ipnet)
	}
	return n, nil
}

// admit checks a node's request: its serving names against the policy for
// its token, then its key against the name's binding (binding it if the
// name is free). It returns the HTTP status to refuse with.
func (n *nodeIdentities) admit(ctx context.Context, req *pki.NodeRequest, taints []v1.Taint, serverToken bool) (int, error) {
	for _, t := range taints {
		if errs := validation.IsQualifiedName(t.Key); len(errs) > 0 || (t.Effect != v1.TaintEffectNoSchedule && t.Effect != v1.TaintEffectPreferNoSchedule && t.Effect != v1.TaintEffectNoExecute) {
			return http.StatusBadRequest, fmt.Errorf("registerTaints: %q is not a taint (a qualified key and effect NoSchedule, PreferNoSchedule or NoExecute)", t.ToString())
		}
	}
	policy, err := n.policy(ctx, req.Name, serverToken)
	if errors.Is(err, errServerName) {
		return http.StatusForbidden, fmt.Errorf("%w; only the server token registers a server's own node", err)
	}
	if err != nil {
		return http.StatusServiceUnavailable, err
	}
	if err := policy.Check(req); err != nil {
		return http.StatusForbidden, err
	}
	key, err := req.KeyHash()
	if err != nil {
		return http.StatusBadRequest, err
	}
	err = n.bind(ctx, req.Name, key, req.Serving.IPAddresses, taints)
	if errors.Is(err, errNodeBound) {
		return http.StatusForbidden, fmt.Errorf("node name %q %w: a node keeps its key in its data dir; "+
			"if this is a reinstalled node, delete its Node object first (keelson kubectl delete node %s), or choose another --node-name", req.Name, err, req.Name)
	}
	if err != nil {
		return http.StatusServiceUnavailable, err
	}
	return http.StatusOK, nil
}

// policy is what a node may name in its serving certificate. A server
// token is cluster root: its node (a server's own agent) may use loopback
// and the servers' addresses. An agent token's may claim no address of a
// server or of another Node.
func (n *nodeIdentities) policy(ctx context.Context, name string, serverToken bool) (pki.ServingPolicy, error) {
	p := pki.ServingPolicy{NodeName: name, AllowLoopback: serverToken, DeniedNets: n.serviceNets}
	if serverToken {
		return p, nil
	}
	if n.servers != nil {
		names, ips := n.servers()
		if slices.Contains(names, name) {
			return p, fmt.Errorf("node name %q is a server's: %w", name, errServerName)
		}
		p.DeniedIPs = append(p.DeniedIPs, ips...)
	}
	nodes, err := n.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return p, fmt.Errorf("listing nodes to check the request's addresses: %w", err)
	}
	for _, node := range nodes.Items {
		if node.Name == name {
			continue
		}
		for _, a := range node.Status.Addresses {
			if ip := net.ParseIP(a.Address); ip != nil {
				p.DeniedIPs = append(p.DeniedIPs, ip)
			}
		}
		for _, a := range strings.Split(node.Annotations[NodeAddressesAnnotation], ",") {
			if ip := net.ParseIP(a); ip != nil {
				p.DeniedIPs = append(p.DeniedIPs, ip)
			}
		}
	}
	return p, nil
}

// bind records key as the owner of the node name, and ips as its serving
// addresses, or returns errNodeBound when another key owns the name. A
// missing Node is created with the binding, so the name is held from the
// first request on; the agent takes the Node over when it registers.
func (n *nodeIdentities) bind(ctx context.Context, name, key string, ips []net.IP, taints []v1.Taint) error {
	var addrs []string
	for _, ip := range ips {
		addrs = append(addrs, ip.String())
	}
	want := map[string]string{NodeKeyAnnotation: key, NodeAddressesAnnotation: strings.Join(addrs, ",")}
	nodes := n.kube.CoreV1().Nodes()
	for range 5 {
		node, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = nodes.Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: want}, Spec: v1.NodeSpec{Taints: taints}}, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			return wrapBind(name, err)
		}
		if err != nil {
			return wrapBind(name, err)
		}
		if cur := node.Annotations[NodeKeyAnnotation]; cur != "" && cur != key {
			return errNodeBound
		}
		if node.Annotations[NodeKeyAnnotation] == key && node.Annotations[NodeAddressesAnnotation] == want[NodeAddressesAnnotation] {
			return nil
		}
		if node.Annotations == nil {
			node.Annotations = map[string]string{}
		}
		maps.Copy(node.Annotations, want)
		_, err = nodes.Update(ctx, node, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		return wrapBind(name, err)
	}
	return fmt.Errorf("binding node name %q: the Node keeps changing; retry", name)
}

func wrapBind(name string, err error) error {
	if err != nil {
		return fmt.Errorf("binding node name %q to its key: %w", name, err)
	}
	return nil
}
