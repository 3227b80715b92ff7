package pods

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/keelson/keelson/agent/runtime"
	"github.com/keelson/keelson/agent/volumes"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/component-helpers/node/util/sysctl"
)

// startContainer pulls the container's image if needed, creates the
// container and starts it. When it cannot (an image or configuration
// problem), it returns why the container waits and when to retry; a failed
// start is recorded as the attempt's exit (StartError), which the restart
// policy then handles.
func (m *Manager) startContainer(ctx context.Context, pod *v1.Pod, c *v1.Container, number int32, kind containerKind, sb *sandbox) (*v1.ContainerStateWaiting, time.Duration, error) {
	if waiting, retry := m.imageVolumesWait(pod, c, sb.images); waiting != nil {
		return waiting, retry, nil
	}
	ref, waiting, retry := m.pullImage(ctx, pod, c.Image, c.ImagePullPolicy)
	if waiting != nil {
		return waiting, retry, nil
	}
	spec, err := m.containerSpec(ctx, pod, c, sb)
	if err == nil {
		err = m.checkRunAsNonRoot(ctx, pod, c, ref)
	}
	if err == nil && kind == kindEphemeral {
		spec.PIDNS, err = m.targetPIDNamespace(ctx, pod, c.Name)
	}
	if err != nil {
		var ce configError
		if errors.As(err, &ce) {
			m.event(pod, v1.EventTypeWarning, "Failed", "Error: %v", err)
			return &v1.ContainerStateWaiting{Reason: reasonCreateConfigError, Message: err.Error()}, retryInterval * 5, nil
		}
		var cre createError
		if errors.As(err, &cre) {
			m.event(pod, v1.EventTypeWarning, "Failed", "Error: %v", err)
			return &v1.ContainerStateWaiting{Reason: reasonCreateContainerError, Message: err.Error()}, retryInterval * 5, nil
		}
		return nil, 0, err
	}
	spec.Image = ref
	id := runtime.NewID()
	if spec.ShimGroup, err = m.shimGroup(ctx, pod.UID, id); err != nil {
		return nil, 0, err
	}
	spec.Labels = map[string]string{
		labelShimGroup:     spec.ShimGroup,
		labelManaged:       "true",
		labelPodUID:        string(pod.UID),
		labelPodName:       pod.Name,
		labelPodNamespace:  pod.Namespace,
		labelContainerName: c.Name,
		labelAttempt:       strconv.Itoa(int(number)),
		labelInit:          strconv.FormatBool(kind == kindInit || kind == kindSidecar),
		labelResources:     encodeApplied(c.Resources),
	}
	spec.CgroupsPath = m.cgroupPath(pod.UID, id)
	termPath := m.terminationFile(pod.UID, id)
	if err := os.MkdirAll(filepath.Dir(termPath), 0o750); err != nil {
		return nil, 0, err
	}
	if err := os.WriteFile(termPath, nil, 0o666); err != nil {
		return nil, 0, err
	}
	if err := os.Chmod(termPath, 0o666); err != nil {
		return nil, 0, err
	}
	tmPath := c.TerminationMessagePath
	if tmPath == "" {
		tmPath = v1.TerminationMessagePathDefault
	}
	spec.Mounts = append(spec.Mounts, runtime.Mount{Source: termPath, Destination: tmPath})
	if err := m.startSlots.acquire(ctx); err != nil {
		return nil, 0, err
	}
	waiting, started, err := m.createAndStart(ctx, pod, c, number, id, spec)
	m.startSlots.release()
	if waiting != nil {
		return waiting, retryInterval * 5, nil
	}
	if err != nil || !started {
		return nil, 0, err
	}
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		if err := m.runHook(ctx, pod, c, id, sb.podIP, c.Lifecycle.PostStart); err != nil {
			m.event(pod, v1.EventTypeWarning, "FailedPostStartHook", "PostStartHook failed: %v", err)
			if kerr := m.killContainer(ctx, pod, c, id, podGrace(pod), true, nil); kerr != nil {
				return nil, 0, kerr
			}
		}
	}
	return nil, 0, nil
}

// shimGroup is the shim group a new container id of the pod joins: that of
// a container of the pod whose task runs, so that the pod's containers share
// one shim as a CRI sandbox's do; else a group of its own. A group whose
// containers are all gone is never reused: its shim may be exiting (it
// removes its socket asynchronously), and a container handed to an exiting
// shim would be lost. Only the pod's worker deletes the pod's tasks, so a
// task seen running here outlives the start.
func (m *Manager) shimGroup(ctx context.Context, uid types.UID, id string) (string, error) {
	cs, err := m.rt.List(ctx, map[string]string{labelPodUID: string(uid)})
	if err != nil {
		return "", err
	}
	for _, c := range cs {
		if g := c.Labels[labelShimGroup]; g != "" && c.State == runtime.StateRunning {
			return g, nil
		}
	}
	return id, nil
}

// createAndStart creates the container and starts it. It returns why the
// container waits if containerd refused to create it, and whether it
// started: a failed start is recorded as the attempt's exit (StartError).
func (m *Manager) createAndStart(ctx context.Context, pod *v1.Pod, c *v1.Container, number int32, id string, spec runtime.ContainerSpec) (*v1.ContainerStateWaiting, bool, error) {
	created := m.clock.Now()
	if err := m.rt.Create(ctx, id, spec); err != nil {
		m.event(pod, v1.EventTypeWarning, "Failed", "Error: %v", err)
		return &v1.ContainerStateWaiting{Reason: reasonCreateContainerError, Message: err.Error()}, false, nil
	}
	m.event(pod, v1.EventTypeNormal, "Created", "Created container: %s", c.Name)
	out, err := m.openOutput(pod.UID, c, number, id)
	if err != nil {
		return nil, false, err
	}
	started := m.clock.Now()
	if err := m.rt.Start(ctx, id, out.io(c)); err != nil {
		m.closeOutput(id)
		m.event(pod, v1.EventTypeWarning, "Failed", "Error: %v", err)
		return nil, false, m.rt.RecordExit(ctx, id, 128, reasonStartError, err.Error())
	}
	m.event(pod, v1.EventTypeNormal, "Started", "Started container %s", c.Name)
	m.log.Debug("container started", "pod", podKey(pod), "container", c.Name, "id", id,
		"create", started.Sub(created), "start", m.clock.Since(started))
	return nil, true, nil
}

// pullImage makes an image (a container's or an image volume's) present by
// its pull policy, with the pod's pull secrets and the pod's back-off per
// image, and records kubelet's events. It returns the image's full
// reference, or why the containers needing it wait and when to retry.
func (m *Manager) pullImage(ctx context.Context, pod *v1.Pod, image string, policy v1.PullPolicy) (string, *v1.ContainerStateWaiting, time.Duration) {
	ref, err := runtime.NormalizeImage(image)
	if err != nil {
		m.event(pod, v1.EventTypeWarning, reasonInvalidImageName, "Failed to apply default image tag %q: %v", image, err)
		return "", &v1.ContainerStateWaiting{Reason: reasonInvalidImageName, Message: err.Error()}, m.opts.SyncInterval
	}
	present, err := m.images.HasImage(ctx, ref)
	if err != nil {
		return "", &v1.ContainerStateWaiting{Reason: reasonErrImagePull, Message: err.Error()}, retryInterval
	}
	if policy == "" {
		policy = v1.PullIfNotPresent
		if strings.HasSuffix(ref, ":latest") {
			policy = v1.PullAlways
		}
	}
	switch {
	case policy == v1.PullNever && !present:
		msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", image)
		m.event(pod, v1.EventTypeWarning, reasonErrImageNeverPull, "%s", msg)
		return "", &v1.ContainerStateWaiting{Reason: reasonErrImageNeverPull, Message: msg}, m.opts.SyncInterval
	case policy == v1.PullNever, policy == v1.PullIfNotPresent && present:
		return ref, nil, 0
	}
	key := string(pod.UID) + "/image/" + ref
	if wait := m.pulls.waitSinceUpdate(key); wait > 0 {
		msg := fmt.Sprintf("Back-off pulling image %q", image)
		m.event(pod, v1.EventTypeNormal, "BackOff", "%s", msg)
		return "", &v1.ContainerStateWaiting{Reason: reasonImagePullBackOff, Message: msg}, wait
	}
	m.event(pod, v1.EventTypeNormal, "Pulling", "Pulling image %q", image)
	start := m.clock.Now()
	size, err := m.images.Pull(ctx, ref, m.pullCredentials(ctx, pod))
	if err != nil {
		now := m.clock.Now()
		m.pulls.next(key, now)
		msg := fmt.Sprintf("Failed to pull image %q: %v", image, err)
		m.event(pod, v1.EventTypeWarning, "Failed", "%s", msg)
		return "", &v1.ContainerStateWaiting{Reason: reasonErrImagePull, Message: msg}, m.pulls.waitSinceUpdate(key)
	}
	took := m.clock.Since(start)
	if m.opts.ImagePulled != nil {
		m.opts.ImagePulled(size, took)
	}
	m.event(pod, v1.EventTypeNormal, "Pulled", "Successfully pulled image %q in %s", image, took.Round(time.Millisecond))
	return ref, nil, 0
}

// containerSpec turns a pod's container into the runtime's description.
func (m *Manager) containerSpec(ctx context.Context, pod *v1.Pod, c *v1.Container, sb *sandbox) (runtime.ContainerSpec, error) {
	env, err := containerEnv(pod, c, m.envSources(ctx, pod, sb))
	if err != nil {
		return runtime.ContainerSpec{}, err
	}
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	spec := runtime.ContainerSpec{
		Env:        env,
		WorkingDir: c.WorkingDir,
		Hostname:   sb.hostname,
		NetNS:      sb.netns,
		TTY:        c.TTY,
		Stdin:      c.Stdin,
	}
	for _, a := range c.Command {
		spec.Command = append(spec.Command, expand(a, vars))
	}
	for _, a := range c.Args {
		spec.Args = append(spec.Args, expand(a, vars))
	}
	mounts, err := m.mounts(pod, c, sb, vars)
	if err != nil {
		return runtime.ContainerSpec{}, err
	}
	spec.Mounts = mounts
	applySecurity(&spec, pod, c)
	if err := m.opts.Security.profiles(&spec, pod, c); err != nil {
		return runtime.ContainerSpec{}, err
	}
	applyResources(&spec, c)
	capacity := m.opts.Node.Capacity()
	adj := oomScoreAdj(pod, c, capacity.Memory().Value())
	spec.OOMScoreAdj = &adj
	return spec, nil
}

// mounts are the container's volume mounts plus the pod's managed files.
func (m *Manager) mounts(pod *v1.Pod, c *v1.Container, sb *sandbox, vars map[string]string) ([]runtime.Mount, error) {
	var out []runtime.Mount
	managed := map[string]string{"/etc/hosts": sb.hosts, "/etc/resolv.conf": sb.resolv, "/etc/hostname": sb.hostFile}
	for i, vm := range c.VolumeMounts {
		vol, ok := sb.volumes[vm.Name]
		if !ok {
			vol, ok = imageVolumeMount(sb.images, vm.Name)
		}
		if !ok {
			return nil, configErrorf("volumeMount %q refers to no volume of the pod", vm.Name)
		}
		src := vol.Path
		sub := vm.SubPath
		if vm.SubPathExpr != "" {
			sub = expand(vm.SubPathExpr, vars)
		}
		switch {
		case sub != "" && vol.Image:
			p, err := volumes.ImageSubPath(sb.dir, vm.Name, vol.Path, c.Name, i, sub)
			if err != nil {
				return nil, createErrorf("%s: %v", imageVolumeMountFailed, err)
			}
			src = p
		case sub != "":
			// The container gets an agent-owned bind of the opened
			// subPath, never a path a container could re-point.
			p, err := volumes.SubPath(sb.dir, vm.Name, vol.Path, c.Name, i, sub)
			if err != nil {
				return nil, configErrorf("%v", err)
			}
			src = p
		}
		out = append(out, runtime.Mount{Source: src, Destination: vm.MountPath, ReadOnly: vm.ReadOnly || vol.ReadOnly})
		delete(managed, vm.MountPath) // a volume mounted there wins
	}
	for dst, src := range managed {
		if src != "" {
			out = append(out, runtime.Mount{Source: src, Destination: dst})
		}
	}
	return out, nil
}

func applySecurity(spec *runtime.ContainerSpec, pod *v1.Pod, c *v1.Container) {
	psc := pod.Spec.SecurityContext
	sc := c.SecurityContext
	var uid, gid *int64
	var groups []int64
	if psc != nil {
		uid, gid, groups = psc.RunAsUser, psc.RunAsGroup, psc.SupplementalGroups
		if psc.FSGroup != nil {
			groups = append(groups, *psc.FSGroup)
		}
		if len(psc.Sysctls) > 0 {
			spec.Sysctls = map[string]string{}
			for _, s := range psc.Sysctls {
				spec.Sysctls[sysctl.NormalizeName(s.Name)] = s.Value
			}
		}
	}
	if sc != nil {
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = sc.RunAsGroup
		}
		spec.Privileged = sc.Privileged != nil && *sc.Privileged
		spec.ReadOnlyRootfs = sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
		spec.NoNewPrivileges = sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation
		if sc.Capabilities != nil {
			for _, cp := range sc.Capabilities.Add {
				spec.CapAdd = append(spec.CapAdd, string(cp))
			}
			for _, cp := range sc.Capabilities.Drop {
				spec.CapDrop = append(spec.CapDrop, string(cp))
			}
		}
	}
	if uid != nil || gid != nil || len(groups) > 0 {
		u := &runtime.User{}
		if uid != nil {
			u.UID = uint32(*uid)
		}
		if gid != nil {
			u.GID, u.HasGID = uint32(*gid), true
		}
		for _, g := range groups {
			u.AdditionalGIDs = append(u.AdditionalGIDs, uint32(g))
		}
		if uid != nil || gid != nil {
			spec.User = u
		} else {
			spec.User = &runtime.User{AdditionalGIDs: u.AdditionalGIDs}
		}
	}
}

// applyResources turns requests and limits into cgroup settings as kubelet
// does: CPU shares from the request, a CFS quota from the limit, and the
// memory limit.
func applyResources(spec *runtime.ContainerSpec, c *v1.Container) {
	const period = 100000 // microseconds, the CFS default
	if q, ok := c.Resources.Requests[v1.ResourceCPU]; ok {
		spec.CPUShares = uint64(max(q.MilliValue()*1024/1000, 2))
	} else if q, ok := c.Resources.Limits[v1.ResourceCPU]; ok {
		spec.CPUShares = uint64(max(q.MilliValue()*1024/1000, 2))
	} else {
		spec.CPUShares = 2 // best effort
	}
	if q, ok := c.Resources.Limits[v1.ResourceCPU]; ok {
		spec.CPUQuota = max(q.MilliValue()*period/1000, 1000)
		spec.CPUPeriod = period
	}
	if q, ok := c.Resources.Limits[v1.ResourceMemory]; ok {
		spec.MemoryLimit = q.Value()
	}
}

// envSources gathers what a container's environment reads.
func (m *Manager) envSources(ctx context.Context, pod *v1.Pod, sb *sandbox) envSources {
	cms := m.opts.Client.CoreV1().ConfigMaps(pod.Namespace)
	secrets := m.opts.Client.CoreV1().Secrets(pod.Namespace)
	var services []*v1.Service
	if m.opts.Services != nil {
		services = m.opts.Services()
	}
	return envSources{
		configMap: func(name string) (*v1.ConfigMap, error) {
			cm, err := cms.Get(ctx, name, metav1.GetOptions{})
			if isNotFound(err) {
				return nil, nil
			}
			return cm, err
		},
		secret: func(name string) (*v1.Secret, error) {
			s, err := secrets.Get(ctx, name, metav1.GetOptions{})
			if isNotFound(err) {
				return nil, nil
			}
			return s, err
		},
		services:    services,
		allocatable: m.opts.Node.Allocatable(),
		podIPs:      sb.podIPs,
		hostIPs:     m.opts.Node.HostIPs(),
	}
}

// pullCredentials reads the pod's image pull secrets (dockerconfigjson or
// dockercfg) into per-registry credentials.
func (m *Manager) pullCredentials(ctx context.Context, pod *v1.Pod) runtime.Credentials {
	type auth struct {
		Username, Password, Auth, IdentityToken string
	}
	creds := map[string]auth{}
	for _, ref := range pod.Spec.ImagePullSecrets {
		s, err := m.opts.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			m.log.Warn("reading an image pull secret", "pod", podKey(pod), "secret", ref.Name, "err", err)
			continue
		}
		var cfg struct {
			Auths map[string]auth `json:"auths"`
		}
		switch s.Type {
		case v1.SecretTypeDockerConfigJson:
			_ = json.Unmarshal(s.Data[v1.DockerConfigJsonKey], &cfg)
		case v1.SecretTypeDockercfg:
			_ = json.Unmarshal(s.Data[v1.DockerConfigKey], &cfg.Auths)
		}
		for host, a := range cfg.Auths {
			host = strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://")
			host, _, _ = strings.Cut(host, "/")
			if host == "index.docker.io" || host == "registry-1.docker.io" {
				host = "docker.io"
			}
			creds[host] = a
		}
	}
	if len(creds) == 0 {
		return nil
	}
	return func(host string) (string, string, error) {
		if host == "registry-1.docker.io" {
			host = "docker.io"
		}
		a, ok := creds[host]
		if !ok {
			return "", "", nil
		}
		if a.IdentityToken != "" {
			return "", a.IdentityToken, nil
		}
		if a.Username == "" && a.Auth != "" {
			if dec, err := decodeBase64(a.Auth); err == nil {
				a.Username, a.Password, _ = strings.Cut(dec, ":")
			}
		}
		return a.Username, a.Password, nil
	}
}
