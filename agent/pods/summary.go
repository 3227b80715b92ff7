package pods

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/keelson/keelson/agent/quota"
	"github.com/keelson/keelson/agent/runtime"
	"github.com/keelson/keelson/agent/stats"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// Usage reads the node's usage and each running container's from its
// cgroup, grouped by pod. Containers that exit while being read are left
// out.
func (m *Manager) Usage(ctx context.Context) (stats.Snapshot, error) {
	node, err := stats.Node()
	if err != nil {
		return stats.Snapshot{}, err
	}
	snap := stats.Snapshot{Node: node}
	// One listing of the records for every pod, no call per container: a
	// started, unreaped container runs while its cgroup holds a process.
	// (containerd filters labels by scanning all its containers, so a
	// listing per pod made a scrape quadratic.)
	all, err := m.rt.ListRecords(ctx, map[string]string{labelManaged: "true"})
	if err != nil {
		return stats.Snapshot{}, err
	}
	byPod := map[string][]runtime.Container{}
	for _, c := range all {
		uid := c.Labels[labelPodUID]
		byPod[uid] = append(byPod[uid], c)
	}
	for _, pod := range m.Pods() {
		pu := stats.PodUsage{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)}
		if pod.Status.StartTime != nil {
			pu.StartTime = pod.Status.StartTime.Time
		}
		for _, c := range byPod[string(pod.UID)] {
			if c.Reaped || c.StartedAt.IsZero() {
				continue
			}
			cg := m.cgroupPath(pod.UID, c.ID)
			if !stats.Populated(cg) {
				continue // exited, not reaped yet
			}
			u, err := stats.Cgroup(cg)
			if err != nil {
				continue // exited meanwhile
			}
			pu.Add(stats.ContainerUsage{Name: c.Labels[labelContainerName], ID: c.ID, Image: c.Image, Cgroup: cg, StartedAt: c.StartedAt, Usage: u})
		}
		snap.Pods = append(snap.Pods, pu)
	}
	return snap, nil
}

// Summary is the kubelet summary API's answer: the node's CPU, memory and
// filesystem, and each running pod's and container's CPU and memory from
// their cgroups, and the pods' local volumes with their claims.
func (m *Manager) Summary(ctx context.Context) (*statsv1alpha1.Summary, error) {
	now := metav1.NewTime(time.Now())
	snap, err := m.Usage(ctx)
	if err != nil {
		return nil, err
	}
	sum := &statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{
		NodeName: m.opts.NodeName,
		CPU:      m.cpuStats("node", snap.Node),
		Memory:   memStats(snap.Node),
	}}
	if fs, err := stats.Filesystem(m.opts.Dir); err == nil {
		s := fsStats(now, fs)
		sum.Node.Fs = s
		sum.Node.Runtime = &statsv1alpha1.RuntimeStats{ImageFs: s, ContainerFs: s}
	}
	if max, used, err := pidStats(); err == nil {
		sum.Node.Rlimit = &statsv1alpha1.RlimitStats{Time: now, MaxPID: &max, NumOfRunningProcesses: &used}
	}
	pods := map[string]*v1.Pod{}
	for _, p := range m.Pods() {
		pods[string(p.UID)] = p
	}
	keep := map[string]bool{"node": true}
	for _, pu := range snap.Pods {
		ps := statsv1alpha1.PodStats{
			PodRef:    statsv1alpha1.PodReference{Name: pu.Name, Namespace: pu.Namespace, UID: pu.UID},
			StartTime: now,
		}
		if !pu.StartTime.IsZero() {
			ps.StartTime = metav1.NewTime(pu.StartTime)
		}
		for _, c := range pu.Containers {
			keep[c.ID] = true
			ps.Containers = append(ps.Containers, statsv1alpha1.ContainerStats{
				Name:      c.Name,
				StartTime: metav1.NewTime(c.StartedAt),
				CPU:       m.cpuStats(c.ID, c.Usage),
				Memory:    memStats(c.Usage),
			})
		}
		if len(pu.Containers) > 0 {
			key := "pod/" + pu.UID
			keep[key] = true
			ps.CPU = m.cpuStats(key, pu.Usage)
			ps.Memory = memStats(pu.Usage)
		}
		if pod := pods[pu.UID]; pod != nil {
			ps.VolumeStats = m.claimVolumeStats(now, pod)
		}
		sum.Pods = append(sum.Pods, ps)
	}
	m.rates.Forget(keep)
	return sum, nil
}

// ClaimVolumeStats are the statistics of every claim mounted by a pod of
// this node, as /stats/summary reports them, without the rest of the
// summary (cgroup reads, CPU rates): what kubelet_volume_stats_* need.
func (m *Manager) ClaimVolumeStats() []statsv1alpha1.VolumeStats {
	now := metav1.NewTime(m.clock.Now())
	var out []statsv1alpha1.VolumeStats
	for _, p := range m.Pods() {
		out = append(out, m.claimVolumeStats(now, p)...)
	}
	return out
}

// claimVolumeStats are the filesystem statistics of the pod's local
// volumes, with their claims, as kubelet reports them (statfs of the
// mount: the filesystem holding the volume), except that a volume bounded
// by a quota (agent/quota) reports its bound as capacity and its own
// usage, as a volume of its own filesystem would.
func (m *Manager) claimVolumeStats(now metav1.Time, pod *v1.Pod) []statsv1alpha1.VolumeStats {
	var out []statsv1alpha1.VolumeStats
	for _, cv := range m.opts.Volumes.ClaimVolumes(string(pod.UID)) {
		fs, err := stats.Filesystem(cv.Path)
		if err != nil {
			continue
		}
		if u, ok, err := quota.VolumeUsage(cv.Path); err == nil && ok {
			fs = boundedFS(fs, u)
		}
		out = append(out, statsv1alpha1.VolumeStats{Name: cv.Name, FsStats: *fsStats(now, fs),
			PVCRef: &statsv1alpha1.PVCReference{Name: cv.Claim, Namespace: cv.Namespace}})
	}
	return out
}

func (m *Manager) cpuStats(key string, u stats.Usage) *statsv1alpha1.CPUStats {
	total := u.CPUNanos
	s := &statsv1alpha1.CPUStats{Time: metav1.NewTime(u.Time), UsageCoreNanoSeconds: &total}
	if rate, ok := m.rates.NanoCores(key, u); ok {
		s.UsageNanoCores = &rate
	}
	return s
}

func memStats(u stats.Usage) *statsv1alpha1.MemoryStats {
	usage, ws, rss := u.MemoryUsage, u.WorkingSet, u.RSS
	s := &statsv1alpha1.MemoryStats{Time: metav1.NewTime(u.Time), UsageBytes: &usage, WorkingSetBytes: &ws, RSSBytes: &rss}
	if u.MemoryLimit > 0 {
		avail := u.MemoryLimit - min(ws, u.MemoryLimit)
		s.AvailableBytes = &avail
	}
	return s
}

// boundedFS is the statistics of a quota-bounded volume on filesystem fs:
// its bound as capacity, its usage, and what it may still write (no more
// than the filesystem has left).
func boundedFS(fs stats.FS, u quota.Usage) stats.FS {
	fs.Capacity, fs.Used = uint64(u.Limit), uint64(min(u.Used, u.Limit))
	fs.Available = min(fs.Available, fs.Capacity-fs.Used)
	return fs
}

func fsStats(now metav1.Time, fs stats.FS) *statsv1alpha1.FsStats {
	c, a, used, in, inf := fs.Capacity, fs.Available, fs.Used, fs.Inodes, fs.InodesFree
	inUsed := in - inf
	return &statsv1alpha1.FsStats{Time: now, CapacityBytes: &c, AvailableBytes: &a, UsedBytes: &used, Inodes: &in, InodesFree: &inf, InodesUsed: &inUsed}
}

// pidStats is the PID limit and the processes (threads) running.
func pidStats() (int64, int64, error) {
	max, err := readInt("/proc/sys/kernel/pid_max")
	if err != nil {
		return 0, 0, err
	}
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 4 {
		return 0, 0, errors.New("unexpected /proc/loadavg")
	}
	_, total, _ := strings.Cut(f[3], "/")
	used, err := strconv.ParseInt(total, 10, 64)
	return max, used, err
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}
