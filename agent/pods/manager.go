// Package pods makes the pods bound to this node real, as kubelet does: it
// runs init containers in order and then the app containers, restarts them
// by the restart policy with kubelet's back-off, runs liveness, readiness and
// startup probes, honours preStop hooks and grace periods, wires each pod's
// network, volumes, hosts and resolver files, and reports phases, conditions
// and container states as kubelet reports them.
//
// Each pod has one worker goroutine that reconciles it: it reads what runs
// (containerd) and what is wanted (the pod), takes the next steps, writes
// the status when it changed, and sleeps until something changes (a pod
// update, a container exit, a probe verdict) or a back-off ends.
package pods

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/keelson/keelson/agent/cni"
	"github.com/keelson/keelson/agent/runtime"
	"github.com/keelson/keelson/agent/stats"
	"github.com/keelson/keelson/agent/volumes"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// NodeInfo is what pods need to know of their node.
type NodeInfo interface {
	// HostIPs are the node's addresses, InternalIP first.
	HostIPs() []string
	// Allocatable is the node's allocatable resources.
	Allocatable() v1.ResourceList
	// Capacity is the node's capacity (its memory sets the containers'
	// OOM score adjustments).
	Capacity() v1.ResourceList
	// PodCIDR is the node's pod CIDR, empty until assigned.
	PodCIDR() string
	// Labels are the node's labels.
	Labels() map[string]string
	// ObjectTTL is how long ConfigMaps and Secrets read for volumes may be
	// reused (the node's TTL annotation; zero: read them every sync).
	ObjectTTL() time.Duration
}

// Options configures a Manager.
type Options struct {
	NodeName      string
	ClusterDomain string
	ClusterDNS    []string
	// ResolvConf is the node's resolver file, for Default pods.
	ResolvConf string
	// Dir holds a directory per pod (volumes, logs, hosts files).
	Dir string
	// CgroupRoot is the parent cgroup of pods' cgroups.
	CgroupRoot   string
	LogMaxSize   int64
	LogMaxFiles  int
	SyncInterval time.Duration
	// Security is what the agent enforces of security contexts (seccomp,
	// AppArmor, sysctls).
	Security Security

	Client   kubernetes.Interface
	Runtime  *runtime.Runtime
	Network  *cni.Network
	Volumes  *volumes.Manager
	Node     NodeInfo
	Services func() []*v1.Service
	Recorder record.EventRecorder
	Logger   *slog.Logger
	Clock    clockwork.Clock
	// ImagePulled, when set, is called after each successful pull with the
	// image's size in bytes (0 if unknown) and how long the pull took.
	ImagePulled func(size int64, took time.Duration)
	// PodStarted, when set, is called once per pod when all its
	// containers run, with the time since the agent first saw the pod.
	PodStarted func(pod *v1.Pod, latency time.Duration)
	// ProbeMetrics, when set, counts and times every probe.
	ProbeMetrics *ProbeMetrics
	// ParallelStarts bounds how many pods set up their network at once,
	// and how many create and start a container at once; 0 is twice the
	// CPUs. Pulls, hooks and running containers are not bounded by it.
	ParallelStarts int
}

// imageStore is what pulls need of the runtime: whether an image is
// present, and a pull.
type imageStore interface {
	HasImage(ctx context.Context, ref string) (bool, error)
	Pull(ctx context.Context, ref string, creds runtime.Credentials) (int64, error)
}

// Manager runs the pods of this node.
type Manager struct {
	opts     Options
	rt       *runtime.Runtime
	images   imageStore
	log      *slog.Logger
	clock    clockwork.Clock
	restarts *backoff
	pulls    *backoff
	probes   *prober
	rates    stats.Rates // CPU rates for the summary API
	// netSlots and startSlots pipeline a batch of starting pods: network
	// set-ups and container starts are bounded separately, so one pod's
	// container starts while the next one's network is wired.
	netSlots, startSlots slots

	mu      sync.Mutex
	pods    map[types.UID]*v1.Pod // latest seen; absent once deleted
	workers map[types.UID]*worker
	// hostPorts are the host ports of the pods admitted and not finished.
	hostPorts map[types.UID][]hostPort
	outputs   map[string]*output // streams of the containers this agent copies
	// allocations are the pod-level requests the node granted each pod a
	// worker runs, for admitting the others' resizes.
	allocations map[types.UID]v1.ResourceList
	// memoryUsage reads a container cgroup's memory usage in bytes.
	memoryUsage func(cgroup string) (uint64, error)
	wg          sync.WaitGroup
	ctx         context.Context
}

// New returns a Manager; Run starts it.
func New(opts Options) *Manager {
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Security.Sysctls == nil {
		opts.Security.Sysctls, _ = NewSysctlAllowlist(nil) // no pattern, no error
	}
	m := &Manager{
		opts:        opts,
		rt:          opts.Runtime,
		log:         opts.Logger,
		clock:       opts.Clock,
		restarts:    newBackoff(opts.Clock, backoffInitial, backoffMax),
		pulls:       newBackoff(opts.Clock, backoffInitial, backoffMax),
		pods:        map[types.UID]*v1.Pod{},
		workers:     map[types.UID]*worker{},
		hostPorts:   map[types.UID][]hostPort{},
		outputs:     map[string]*output{},
		allocations: map[types.UID]v1.ResourceList{},
		memoryUsage: func(cgroup string) (uint64, error) {
			u, err := stats.Cgroup(cgroup)
			return u.MemoryUsage, err
		},
		netSlots:   newSlots(opts.ParallelStarts),
		startSlots: newSlots(opts.ParallelStarts),
	}
	if opts.Runtime != nil {
		m.images = opts.Runtime
	}
	m.probes = newProber(m)
	return m
}

// PodDir is the directory of a pod on this node.
func (m *Manager) PodDir(uid types.UID) string { return filepath.Join(m.opts.Dir, string(uid)) }

// Handler returns the informer event handler feeding the manager.
func (m *Manager) Handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { m.observe(obj) },
		UpdateFunc: func(_, obj any) { m.observe(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if pod, ok := obj.(*v1.Pod); ok {
				m.forget(pod.UID)
			}
		},
	}
}

func (m *Manager) observe(obj any) {
	pod, ok := obj.(*v1.Pod)
	if !ok || pod.Spec.NodeName != m.opts.NodeName {
		return
	}
	m.mu.Lock()
	m.pods[pod.UID] = pod
	m.mu.Unlock()
	m.kick(pod.UID)
}

func (m *Manager) forget(uid types.UID) {
	m.mu.Lock()
	delete(m.pods, uid)
	m.mu.Unlock()
	m.kick(uid)
}

// pod returns the latest version of a pod, nil once it was deleted.
func (m *Manager) pod(uid types.UID) *v1.Pod {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pods[uid]
}

// Pods lists the pods the agent runs.
func (m *Manager) Pods() []*v1.Pod {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*v1.Pod, 0, len(m.pods))
	for _, p := range m.pods {
		out = append(out, p)
	}
	return out
}

// kick wakes the worker of a pod, starting one if needed.
func (m *Manager) kick(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx == nil || m.ctx.Err() != nil {
		return
	}
	w, ok := m.workers[uid]
	if !ok {
		w = newWorker(m, uid)
		m.workers[uid] = w
		m.wg.Go(func() { w.run(m.ctx) })
	}
	w.wake()
}

// KickAll wakes every pod's worker (the node got its pod CIDR).
func (m *Manager) KickAll() {
	m.mu.Lock()
	uids := make([]types.UID, 0, len(m.pods))
	for uid := range m.pods {
		uids = append(uids, uid)
	}
	m.mu.Unlock()
	for _, uid := range uids {
		m.kick(uid)
	}
}

// workerDone removes a worker that finished its pod, unless the pod came
// back meanwhile.
func (m *Manager) workerDone(uid types.UID, w *worker) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, back := m.pods[uid]; back || w.pending() {
		return false
	}
	delete(m.workers, uid)
	delete(m.allocations, uid)
	return true
}

// Run starts the manager: it re-attaches to the containers a previous run
// left, finds pods that are gone, follows container exits, and stops every
// worker when ctx ends (the containers keep running). current is the synced
// informer's content: a pod absent from it is really gone, even if its add
// event has not been delivered yet.
func (m *Manager) Run(ctx context.Context, current []*v1.Pod) error {
	m.mu.Lock()
	m.ctx = ctx
	for _, p := range current {
		if p.Spec.NodeName == m.opts.NodeName {
			m.pods[p.UID] = p
		}
	}
	m.mu.Unlock()
	if err := m.recover(ctx); err != nil {
		return err
	}
	m.KickAll() // pods whose events came before Run had no worker yet
	m.wg.Go(func() {
		m.rt.Watch(ctx, func(e runtime.Event) {
			c, err := m.rt.Inspect(ctx, e.ContainerID)
			if err != nil {
				return
			}
			if uid := c.Labels[labelPodUID]; uid != "" {
				m.kick(types.UID(uid))
			}
		})
	})
	<-ctx.Done()
	m.wg.Wait()
	m.mu.Lock()
	for id, o := range m.outputs {
		o.close()
		delete(m.outputs, id)
	}
	m.mu.Unlock()
	return nil
}

// recover re-attaches log copiers to the containers that run and wakes a
// worker for every pod that has containers, a network namespace or image
// views here, so that pods deleted while the agent was away are cleaned up.
func (m *Manager) recover(ctx context.Context) error {
	cs, err := m.rt.List(ctx, map[string]string{labelManaged: "true"})
	if err != nil {
		return err
	}
	uids := map[types.UID]bool{}
	for _, c := range cs {
		uids[types.UID(c.Labels[labelPodUID])] = true
		if c.State == runtime.StateRunning || (c.State == runtime.StateExited && !c.Reaped) {
			if err := m.attachOutput(ctx, c); err != nil {
				m.log.Warn("re-attaching to a container's output", "container", c.ID, "err", err)
			}
		}
	}
	if m.opts.Network != nil {
		netns, err := m.opts.Network.NetNSes()
		if err != nil {
			return err
		}
		for _, uid := range netns {
			uids[types.UID(uid)] = true
		}
	}
	owners, err := m.rt.ImageViewOwners(ctx)
	if err != nil {
		return err
	}
	for _, uid := range owners {
		uids[types.UID(uid)] = true
	}
	for uid := range uids {
		m.kick(uid)
	}
	return nil
}

// event records an event about a pod.
func (m *Manager) event(pod *v1.Pod, typ, reason, format string, args ...any) {
	if m.opts.Recorder != nil && pod != nil {
		m.opts.Recorder.Eventf(pod, typ, reason, format, args...)
	}
}

// podKey names a pod in logs.
func podKey(pod *v1.Pod) string { return pod.Namespace + "/" + pod.Name }

// formatPod is kubelet's rendering of a pod in messages: name_ns(uid).
func formatPod(pod *v1.Pod) string {
	return fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID)
}
