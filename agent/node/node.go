// Package node registers the agent's Node and keeps it current: addresses,
// capacity and allocatable measured from the machine, node info (kernel, OS,
// containerd), the kubelet endpoint, the images present, and the Ready,
// MemoryPressure, DiskPressure and PIDPressure conditions from real
// measurements, written only when they change. It also renews the node's
// Lease in kube-node-lease, the heartbeat of nodes outside the serf pool.
package node

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	coordv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/internal/nodehealth"
)

// LeaseNamespace holds the nodes' heartbeat Leases.
const LeaseNamespace = "kube-node-lease"

// Runtime is what the node needs of the container runtime.
type Runtime interface {
	Version(ctx context.Context) (string, error)
	Images(ctx context.Context) ([]Image, error)
}

// Image is an image present on the node.
type Image struct {
	Names []string
	Size  int64
}

// Options configures a Node.
type Options struct {
	Name        string
	IP          net.IP
	KubeletPort int
	Labels      map[string]string
	// Taints are set when the Node is created, never changed afterwards
	// (NodeRestriction forbids a node to change its own taints).
	Taints []v1.Taint
	// ExternalIPs are reported as ExternalIP addresses.
	ExternalIPs []net.IP
	// KeepAddresses leaves the Node's addresses as they are once set (a
	// cloud provider owns them), as kubelet does under an external cloud
	// provider.
	KeepAddresses bool
	// Annotations are kept on the Node (the node may write its own).
	Annotations    map[string]string
	MaxPods        int
	SystemReserved map[string]string
	EvictionHard   map[string]string
	// DataDir is the filesystem whose space is the node's ephemeral storage.
	DataDir        string
	KubeletVersion string
	LeaseDuration  time.Duration
	StatusInterval time.Duration

	Client  kubernetes.Interface
	Runtime Runtime
	// NetworkReady reports whether pods can be wired (the node has a pod
	// CIDR); nil means always.
	NetworkReady func() bool
	Logger       *slog.Logger
	Clock        clockwork.Clock
}

// Node keeps this node's Node object and Lease.
type Node struct {
	opts        Options
	log         *slog.Logger
	clock       clockwork.Clock
	machine     machine
	capacity    v1.ResourceList
	allocatable v1.ResourceList
	thresholds  thresholds

	mu      sync.Mutex
	current *v1.Node // as last read or written
}

// New measures the machine; Register and Run then talk to the API.
func New(opts Options) (*Node, error) {
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m, err := readMachine()
	if err != nil {
		return nil, err
	}
	d, err := statfs(opts.DataDir)
	if err != nil {
		return nil, err
	}
	th, err := parseThresholds(opts.EvictionHard)
	if err != nil {
		return nil, err
	}
	n := &Node{opts: opts, log: opts.Logger, clock: opts.Clock, machine: m, thresholds: th}
	n.capacity = v1.ResourceList{
		v1.ResourceCPU:              *resource.NewQuantity(int64(m.cpus), resource.DecimalSI),
		v1.ResourceMemory:           *resource.NewQuantity(m.memoryBytes, resource.BinarySI),
		v1.ResourcePods:             *resource.NewQuantity(int64(opts.MaxPods), resource.DecimalSI),
		v1.ResourceEphemeralStorage: *resource.NewQuantity(d.capacity, resource.BinarySI),
		"hugepages-1Gi":             *resource.NewQuantity(0, resource.DecimalSI),
		"hugepages-2Mi":             *resource.NewQuantity(0, resource.DecimalSI),
	}
	n.allocatable, err = allocatable(n.capacity, opts.SystemReserved, th)
	if err != nil {
		return nil, err
	}
	return n, nil
}

// allocatable is capacity minus what the system keeps and the hard
// eviction thresholds, as kubelet computes it.
func allocatable(capacity v1.ResourceList, reserved map[string]string, th thresholds) (v1.ResourceList, error) {
	out := capacity.DeepCopy()
	for name, v := range reserved {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("node: systemReserved %s: %w", name, err)
		}
		if c, ok := out[v1.ResourceName(name)]; ok {
			c.Sub(q)
			out[v1.ResourceName(name)] = c
		}
	}
	mem := out[v1.ResourceMemory]
	mem.Sub(*resource.NewQuantity(th.memory.of(capacity.Memory().Value()), resource.BinarySI))
	out[v1.ResourceMemory] = mem
	fs := out[v1.ResourceEphemeralStorage]
	fs.Sub(*resource.NewQuantity(th.nodefs.of(capacity.StorageEphemeral().Value()), resource.BinarySI))
	out[v1.ResourceEphemeralStorage] = fs
	for name, q := range out {
		if q.Sign() < 0 {
			out[name] = *resource.NewQuantity(0, q.Format)
		}
	}
	return out, nil
}

// SetNetworkReady sets how the node tells whether pods can be wired.
func (n *Node) SetNetworkReady(f func() bool) { n.opts.NetworkReady = f }

// HostIPs are the node's addresses.
func (n *Node) HostIPs() []string { return []string{n.opts.IP.String()} }

// Capacity is the machine's resources.
func (n *Node) Capacity() v1.ResourceList { return n.capacity.DeepCopy() }

// Allocatable is what pods may use.
func (n *Node) Allocatable() v1.ResourceList { return n.allocatable.DeepCopy() }

// PodCIDR is the node's pod CIDR as last seen, empty until assigned: its
// spec.podCIDRs joined by a comma (two for dual-stack), as the pod
// network takes them.
func (n *Node) PodCIDR() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.current == nil {
		return ""
	}
	return PodCIDRs(n.current)
}

// PodCIDRs is n's spec.podCIDRs joined by a comma, or spec.podCIDR.
func PodCIDRs(n *v1.Node) string {
	if len(n.Spec.PodCIDRs) > 0 {
		return strings.Join(n.Spec.PodCIDRs, ",")
	}
	return n.Spec.PodCIDR
}

// Labels are the node's labels as last seen (those it registers with until
// then), which PersistentVolumes' node affinity selects on.
func (n *Node) Labels() map[string]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.current == nil {
		return n.labels()
	}
	return n.current.Labels
}

// TTLAnnotation is the node annotation, in seconds, that the ttl
// controller (the nodelifecycle plugin) sets from the cluster's size: how
// long a node may reuse the ConfigMaps and Secrets it read.
const TTLAnnotation = "node.alpha.kubernetes.io/ttl"

// ObjectTTL is the node's TTL annotation as last seen; zero when absent or
// not a non-negative number of seconds.
func (n *Node) ObjectTTL() time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.current == nil {
		return 0
	}
	secs, err := strconv.Atoi(n.current.Annotations[TTLAnnotation])
	if err != nil || secs < 0 {
		return 0
	}
	return time.Duration(secs) * time.Second
}

// Observe records the node as the API server has it (from an informer).
func (n *Node) Observe(node *v1.Node) {
	if node.Name != n.opts.Name {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.current == nil || node.ResourceVersion != n.current.ResourceVersion {
		n.current = node
	}
}

func (n *Node) get() *v1.Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.current
}

// Register creates the Node, or updates the labels of an existing one, and
// writes its status.
func (n *Node) Register(ctx context.Context) error {
	nodes := n.opts.Client.CoreV1().Nodes()
	want := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.opts.Name, Labels: n.labels(), Annotations: n.opts.Annotations}, Spec: v1.NodeSpec{Taints: n.opts.Taints}}
	want.Status = n.desiredStatus(ctx, nil)
	created, err := nodes.Create(ctx, want, metav1.CreateOptions{})
	switch {
	case err == nil:
		n.log.Info("registered node", "node", n.opts.Name, "ip", n.opts.IP)
		n.Observe(created)
		return n.writeStatus(ctx, created, want.Status)
	case !apierrors.IsAlreadyExists(err):
		return fmt.Errorf("node: registering %s: %w", n.opts.Name, err)
	}
	existing, err := nodes.Get(ctx, n.opts.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("node: reading %s: %w", n.opts.Name, err)
	}
	if lacks(existing.Labels, want.Labels) || lacks(existing.Annotations, want.Annotations) {
		upd := existing.DeepCopy()
		upd.Labels = merged(upd.Labels, want.Labels)
		upd.Annotations = merged(upd.Annotations, want.Annotations)
		if existing, err = nodes.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("node: updating the labels and annotations of %s: %w", n.opts.Name, err)
		}
	}
	n.Observe(existing)
	n.warnMissingTaints(existing)
	n.log.Info("node already registered; taking it over", "node", n.opts.Name)
	return n.writeStatus(ctx, existing, n.desiredStatus(ctx, existing))
}

// addresses are the node's InternalIP, ExternalIPs and Hostname, or cur's
// when a cloud provider owns them.
func (n *Node) addresses(cur *v1.Node) []v1.NodeAddress {
	if n.opts.KeepAddresses && cur != nil && len(cur.Status.Addresses) > 0 {
		return cur.Status.Addresses
	}
	out := []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: n.opts.IP.String()}}
	for _, ip := range n.opts.ExternalIPs {
		out = append(out, v1.NodeAddress{Type: v1.NodeExternalIP, Address: ip.String()})
	}
	return append(out, v1.NodeAddress{Type: v1.NodeHostName, Address: n.opts.Name})
}

// warnMissingTaints says which registration taints an existing Node lacks:
// the node may not add them itself, an administrator must. The
// cloud provider's uninitialized taint is meant to go once the node is
// initialised.
func (n *Node) warnMissingTaints(existing *v1.Node) {
	for _, want := range n.opts.Taints {
		if want.Key == "node.cloudprovider.kubernetes.io/uninitialized" {
			continue
		}
		found := false
		for _, t := range existing.Spec.Taints {
			found = found || t.MatchTaint(&want)
		}
		if !found {
			n.log.Warn("the registered node lacks a taint it is configured with; a node may not taint itself, so add it with kubectl",
				"node", n.opts.Name, "taint", want.ToString(), "fix", fmt.Sprintf("kubectl taint node %s %s", n.opts.Name, want.ToString()))
		}
	}
}

func (n *Node) labels() map[string]string {
	l := map[string]string{
		v1.LabelHostname:          n.opts.Name,
		v1.LabelOSStable:          "linux",
		v1.LabelArchStable:        n.machine.arch,
		"beta.kubernetes.io/os":   "linux",
		"beta.kubernetes.io/arch": n.machine.arch,
	}
	for k, v := range n.opts.Labels {
		l[k] = v
	}
	return l
}

// Run keeps the Lease renewed and the status current until ctx ends.
func (n *Node) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { n.leaseLoop(ctx) })
	wg.Go(func() { n.statusLoop(ctx) })
	wg.Wait()
}

func (n *Node) statusLoop(ctx context.Context) {
	t := n.clock.NewTicker(n.opts.StatusInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
		if err := n.SyncStatus(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("updating node status", "node", n.opts.Name, "err", err)
		}
	}
}

// SyncStatus measures the node and writes its status if it changed.
func (n *Node) SyncStatus(ctx context.Context) error {
	cur := n.get()
	if cur == nil {
		var err error
		if cur, err = n.opts.Client.CoreV1().Nodes().Get(ctx, n.opts.Name, metav1.GetOptions{}); err != nil {
			return err
		}
	}
	return n.writeStatus(ctx, cur, n.desiredStatus(ctx, cur))
}

// writeStatus writes want unless the node already has it (heartbeat times
// aside).
func (n *Node) writeStatus(ctx context.Context, cur *v1.Node, want v1.NodeStatus) error {
	if statusEqual(cur.Status, want) {
		return nil
	}
	upd := cur.DeepCopy()
	upd.Status = want
	out, err := n.opts.Client.CoreV1().Nodes().UpdateStatus(ctx, upd, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		fresh, gerr := n.opts.Client.CoreV1().Nodes().Get(ctx, n.opts.Name, metav1.GetOptions{})
		if gerr != nil {
			return gerr
		}
		upd = fresh.DeepCopy()
		upd.Status = n.desiredStatus(ctx, fresh)
		out, err = n.opts.Client.CoreV1().Nodes().UpdateStatus(ctx, upd, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("node: writing the status of %s: %w", n.opts.Name, err)
	}
	n.Observe(out)
	return nil
}

// statusEqual compares two statuses ignoring heartbeat times.
func statusEqual(a, b v1.NodeStatus) bool {
	strip := func(s v1.NodeStatus) v1.NodeStatus {
		s = *s.DeepCopy()
		for i := range s.Conditions {
			s.Conditions[i].LastHeartbeatTime = metav1.Time{}
		}
		return s
	}
	return equality.Semantic.DeepEqual(strip(a), strip(b))
}

// desiredStatus is the node's status as measured now; cur (may be nil)
// supplies the conditions' transition times and fields others own.
func (n *Node) desiredStatus(ctx context.Context, cur *v1.Node) v1.NodeStatus {
	version, err := n.opts.Runtime.Version(ctx)
	runtimeReady := err == nil
	st := v1.NodeStatus{
		Capacity:        n.capacity.DeepCopy(),
		Allocatable:     n.allocatable.DeepCopy(),
		Addresses:       n.addresses(cur),
		DaemonEndpoints: v1.NodeDaemonEndpoints{KubeletEndpoint: v1.DaemonEndpoint{Port: int32(n.opts.KubeletPort)}},
		NodeInfo: v1.NodeSystemInfo{
			MachineID:               n.machine.machineID,
			SystemUUID:              n.machine.systemUUID,
			BootID:                  n.machine.bootID,
			KernelVersion:           n.machine.kernel,
			OSImage:                 n.machine.osImage,
			ContainerRuntimeVersion: "containerd://" + version,
			KubeletVersion:          n.opts.KubeletVersion,
			OperatingSystem:         "linux",
			Architecture:            n.machine.arch,
		},
	}
	if cur != nil {
		keepExtendedResources(&st, cur)
		st.Phase = cur.Status.Phase
		st.VolumesInUse, st.VolumesAttached = cur.Status.VolumesInUse, cur.Status.VolumesAttached
		st.Config = cur.Status.Config
		st.RuntimeHandlers = cur.Status.RuntimeHandlers
		st.Features = cur.Status.Features
		st.DeclaredFeatures = cur.Status.DeclaredFeatures
		if !runtimeReady {
			st.NodeInfo.ContainerRuntimeVersion = cur.Status.NodeInfo.ContainerRuntimeVersion
		}
	}
	if imgs, err := n.opts.Runtime.Images(ctx); err == nil {
		st.Images = nodeImages(imgs)
	} else if cur != nil {
		st.Images = cur.Status.Images
	}
	meas, err := measure(n.opts.DataDir)
	if err != nil {
		n.log.Warn("measuring node pressure", "err", err)
	}
	networkReady := n.opts.NetworkReady == nil || n.opts.NetworkReady()
	var old []v1.NodeCondition
	if cur != nil {
		old = cur.Status.Conditions
	}
	st.Conditions = keepLeaderVerdict(cur, conditions(meas, err == nil, n.thresholds, runtimeReady, networkReady, old, metav1.NewTime(n.clock.Now())))
	return st
}

// keepLeaderVerdict leaves the raft leader's verdict on a gossip node in
// place: once the leader has set Ready to Unknown because the node's
// gossip member is unreachable, the leader alone sets it back (when the
// member is alive again), and the agent's own conditions wait until then.
// Writing them over the verdict would flap Ready between the leader's
// Unknown and the agent's True, each flip moving the node's taints and so
// the eviction clock, whenever the agent reaches the API but its gossip
// does not reach the servers.
func keepLeaderVerdict(cur *v1.Node, conds []v1.NodeCondition) []v1.NodeCondition {
	if cur == nil || !nodehealth.IsGossip(cur) || !nodehealth.UnknownByController(cur) {
		return conds
	}
	out := make([]v1.NodeCondition, 0, len(conds))
	for _, c := range conds {
		if prev := nodehealth.Condition(cur, c.Type); prev != nil && slices.Contains(nodehealth.AgentConditions, c.Type) {
			c = *prev
		}
		out = append(out, c)
	}
	return out
}

// maxImages is how many images kubelet reports in a node's status.
const maxImages = 50

func nodeImages(imgs []Image) []v1.ContainerImage {
	sort.SliceStable(imgs, func(i, j int) bool { return imgs[i].Size > imgs[j].Size })
	var out []v1.ContainerImage
	for _, img := range imgs {
		if len(out) == maxImages {
			break
		}
		names := append([]string{}, img.Names...)
		sort.Strings(names)
		out = append(out, v1.ContainerImage{Names: names, SizeBytes: img.Size})
	}
	return out
}

// leaseLoop renews the node's Lease every quarter of its duration, while
// the node's liveness does not come from the gossip pool: a gossip node's
// heartbeat costs no write at all (see plugins/sdk/nodehealth).
func (n *Node) leaseLoop(ctx context.Context) {
	interval := n.opts.LeaseDuration / 4
	for {
		if cur := n.get(); cur != nil && nodehealth.IsGossip(cur) {
			interval = n.opts.LeaseDuration / 4
		} else if err := n.renewLease(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("renewing the node lease", "node", n.opts.Name, "err", err)
			interval = min(max(interval/2, 200*time.Millisecond), n.opts.LeaseDuration/4)
		} else {
			interval = n.opts.LeaseDuration / 4
		}
		select {
		case <-ctx.Done():
			return
		case <-n.clock.After(interval):
		}
	}
}

func (n *Node) renewLease(ctx context.Context) error {
	leases := n.opts.Client.CoordinationV1().Leases(LeaseNamespace)
	now := metav1.NewMicroTime(n.clock.Now())
	l, err := leases.Get(ctx, n.opts.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l = &coordv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: n.opts.Name, Namespace: LeaseNamespace}}
		n.setLease(l, now)
		_, err = leases.Create(ctx, l, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	n.setLease(l, now)
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}

func (n *Node) setLease(l *coordv1.Lease, now metav1.MicroTime) {
	l.Spec.HolderIdentity = ptr.To(n.opts.Name)
	l.Spec.LeaseDurationSeconds = ptr.To(int32(n.opts.LeaseDuration / time.Second))
	l.Spec.RenewTime = &now
	if cur := n.get(); cur != nil && len(l.OwnerReferences) == 0 {
		// The Node owns its Lease: deleting the Node removes it.
		l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: cur.Name, UID: cur.UID}}
	}
}

// lacks reports whether have misses a key of want or holds another value.
func lacks(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return true
		}
	}
	return false
}

// merged is have with want's keys set.
func merged(have, want map[string]string) map[string]string {
	if have == nil && len(want) > 0 {
		have = map[string]string{}
	}
	maps.Copy(have, want)
	return have
}
