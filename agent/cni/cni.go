// Package cni gives each pod its own network namespace and an address from
// the node's pod CIDR, through the standard CNI plugins (bridge with
// host-local IPAM, and portmap for host ports) driven by libcni, one plugin
// chain call per pod; the namespace's loopback is set up in-process.
package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// networkName names Keelson's pod network in CNI's caches.
const networkName = "keelson"

// Options configures the pod network.
type Options struct {
	// BinDir holds the CNI plugins.
	BinDir string
	// Dir holds generated configuration, libcni's cache, host-local's
	// address leases and the pods' network namespace files.
	Dir string
	// Bridge is the Linux bridge pods are attached to; it gets the first
	// address of the pod CIDR and is the pods' gateway.
	Bridge string
	// MTU of the pods' interfaces; 0 lets the plugin choose.
	MTU int
	// Masquerade SNATs traffic leaving the pod CIDR.
	Masquerade bool
}

// Pod identifies the pod a namespace is for.
type Pod struct {
	Namespace, Name, UID string
}

// PortMapping is a container port published on the node.
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"` // tcp, udp or sctp
	HostIP        string `json:"hostIP,omitempty"`
}

// Network wires pods to the node's pod network.
type Network struct {
	opts Options
	cni  *libcni.CNIConfig

	mu      sync.Mutex
	podCIDR string
}

// New checks the plugins are installed and prepares the directories.
func New(opts Options) (*Network, error) {
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		if _, err := os.Stat(filepath.Join(opts.BinDir, p)); err != nil {
			return nil, fmt.Errorf("cni: plugin %s not found in %s (install containernetworking-plugins or set network.cniBinDir): %w", p, opts.BinDir, err)
		}
	}
	for _, d := range []string{opts.confDir(), opts.cacheDir(), opts.ipamDir(), opts.netnsDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("cni: %w", err)
		}
	}
	return &Network{opts: opts, cni: libcni.NewCNIConfigWithCacheDir([]string{opts.BinDir}, opts.cacheDir(), nil)}, nil
}

func (o Options) confDir() string  { return filepath.Join(o.Dir, "conf") }
func (o Options) cacheDir() string { return filepath.Join(o.Dir, "cache") }
func (o Options) ipamDir() string  { return filepath.Join(o.Dir, "ipam") }
func (o Options) netnsDir() string { return filepath.Join(o.Dir, "netns") }

// SetPodCIDR configures the network for the node's pod CIDR: one CIDR, or
// the node's spec.podCIDRs joined by a comma (dual-stack: each pod gets
// an address of each, the first family's first). Pods can be wired only
// once it is set.
func (n *Network) SetPodCIDR(cidr string) error {
	for _, c := range strings.Split(cidr, ",") {
		if _, _, err := net.ParseCIDR(c); err != nil {
			return fmt.Errorf("cni: pod CIDR %q: %w", cidr, err)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.podCIDR == cidr {
		return nil
	}
	conf, err := n.conflist(cidr, true)
	if err != nil {
		return err
	}
	// Written for operators to read; pods are wired from memory.
	if err := os.WriteFile(filepath.Join(n.opts.confDir(), "10-keelson.conflist"), conf, 0o600); err != nil {
		return fmt.Errorf("cni: %w", err)
	}
	n.podCIDR = cidr
	return nil
}

// PodCIDR is the configured pod CIDR, empty before SetPodCIDR.
func (n *Network) PodCIDR() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.podCIDR
}

// conflist is the CNI configuration for cidr (one range per CIDR, with a
// default route of its family); portmap is chained only for pods with host
// ports, so that the others touch no iptables chain.
func (n *Network) conflist(cidr string, portmap bool) ([]byte, error) {
	var ranges [][]map[string]string
	var routes []map[string]string
	for _, c := range strings.Split(cidr, ",") {
		ranges = append(ranges, []map[string]string{{"subnet": c}})
		dst := "0.0.0.0/0"
		if strings.Contains(c, ":") {
			dst = "::/0"
		}
		routes = append(routes, map[string]string{"dst": dst})
	}
	bridge := map[string]any{
		"type":        "bridge",
		"bridge":      n.opts.Bridge,
		"isGateway":   true,
		"ipMasq":      n.opts.Masquerade,
		"hairpinMode": true,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  ranges,
			"routes":  routes,
			"dataDir": n.opts.ipamDir(),
		},
	}
	if n.opts.MTU > 0 {
		bridge["mtu"] = n.opts.MTU
	}
	plugins := []any{bridge}
	if portmap {
		plugins = append(plugins, map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true})
	}
	return json.MarshalIndent(map[string]any{"cniVersion": "1.0.0", "name": networkName, "plugins": plugins}, "", "  ")
}

// NetNSPath is where a pod's network namespace is mounted.
func (n *Network) NetNSPath(uid string) string { return filepath.Join(n.opts.netnsDir(), uid) }

// ErrNoPodCIDR is returned by Setup before the node has a pod CIDR.
var ErrNoPodCIDR = errors.New("cni: the node has no pod CIDR yet")

func (n *Network) runtimeConf(pod Pod, ports []PortMapping) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: pod.UID,
		NetNS:       n.NetNSPath(pod.UID),
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", pod.Namespace},
			{"K8S_POD_NAME", pod.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", pod.UID},
			{"K8S_POD_UID", pod.UID},
		},
	}
	if len(ports) > 0 {
		rt.CapabilityArgs = map[string]any{"portMappings": ports}
	}
	return rt
}

// Setup creates the pod's network namespace and wires it, or returns its
// addresses if that was done before. It returns the namespace's path and
// the pod's IPs, one per pod CIDR in their order.
func (n *Network) Setup(ctx context.Context, pod Pod, ports []PortMapping) (string, []net.IP, error) {
	cidr := n.PodCIDR()
	if cidr == "" {
		return "", nil, ErrNoPodCIDR
	}
	nsPath := n.NetNSPath(pod.UID)
	rt := n.runtimeConf(pod, ports)
	conf, err := n.conflist(cidr, len(ports) > 0)
	if err != nil {
		return "", nil, err
	}
	list, err := libcni.ConfListFromBytes(conf)
	if err != nil {
		return "", nil, fmt.Errorf("cni: %w", err)
	}
	if isNetNS(nsPath) {
		if res, err := n.cni.GetNetworkListCachedResult(list, rt); err == nil && res != nil {
			if ips, err := podIPs(res, cidr); err == nil {
				return nsPath, ips, nil
			}
		}
	} else if err := createNetNS(nsPath); err != nil {
		return "", nil, err
	}
	// The loopback plugin would only set lo up: done in-process, it saves
	// a plugin execution per pod, so the pod costs one CNI call.
	if err := InNetNS(nsPath, loopbackUp); err != nil {
		return "", nil, fmt.Errorf("cni: loopback of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	res, err := n.cni.AddNetworkList(ctx, list, rt)
	if err != nil {
		// Leave nothing half-configured: the next attempt starts clean.
		_ = n.cni.DelNetworkList(context.WithoutCancel(ctx), list, rt)
		return "", nil, fmt.Errorf("cni: wiring pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	ips, err := podIPs(res, cidr)
	if err != nil {
		return "", nil, fmt.Errorf("cni: pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nsPath, ips, nil
}

// Teardown releases the pod's address, port mappings and network
// namespace. It is idempotent.
func (n *Network) Teardown(ctx context.Context, pod Pod) error {
	rt := n.runtimeConf(pod, nil)
	// Delete with the configuration the pod was wired with, so that a
	// chained portmap removes its rules too.
	cached, cachedRT, err := n.cni.GetNetworkListCachedConfig(&libcni.NetworkConfigList{Name: networkName}, rt)
	if err == nil && cached != nil {
		list, err := libcni.ConfListFromBytes(cached)
		if err != nil {
			return fmt.Errorf("cni: cached configuration of pod %s: %w", pod.UID, err)
		}
		if cachedRT != nil {
			rt.CapabilityArgs = cachedRT.CapabilityArgs
		}
		if !isNetNS(rt.NetNS) {
			rt.NetNS = "" // plugins then release what lives outside the namespace
		}
		if err := n.cni.DelNetworkList(ctx, list, rt); err != nil {
			return fmt.Errorf("cni: unwiring pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
	}
	return removeNetNS(n.NetNSPath(pod.UID))
}

// NetNSes lists the pod UIDs that have a network namespace here, for
// cleaning up after pods the agent no longer knows.
func (n *Network) NetNSes() ([]string, error) {
	entries, err := os.ReadDir(n.opts.netnsDir())
	if err != nil {
		return nil, fmt.Errorf("cni: %w", err)
	}
	var uids []string
	for _, e := range entries {
		uids = append(uids, e.Name())
	}
	return uids, nil
}

// podIPs are the addresses the plugin assigned, one per family of cidr
// (comma-separated), in cidr's order.
func podIPs(res types.Result, cidr string) ([]net.IP, error) {
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("reading the plugin's result: %w", err)
	}
	var out []net.IP
	for _, c := range strings.Split(cidr, ",") {
		v4 := !strings.Contains(c, ":")
		for _, ip := range r.IPs {
			if (ip.Address.IP.To4() != nil) == v4 {
				out = append(out, ip.Address.IP)
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("the plugin assigned no address")
	}
	return out, nil
}
