// Package volumes materializes a pod's volumes on the node: emptyDir
// (on disk or tmpfs), hostPath (with its type checks), the projected
// kinds kubelet keeps current (configMap, secret, downwardAPI, projected
// with the pod's bound service-account token, rotated before it expires,
// ClusterTrustBundles' certificates and pod certificates, requested with
// PodCertificateRequests and renewed from their beginRefreshAt),
// claims (persistentVolumeClaim and generic ephemeral volumes) bound to
// hostPath or local PersistentVolumes, and read-only views of images (image
// volumes, mounted once the caller pulled their image), in kubelet's
// directory layout under the pod's directory. It also makes, bounds (agent/quota) and removes the
// directories of local-path volumes on this node.
package volumes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	authv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/agent/quota"
)

// Options configures a Manager.
type Options struct {
	Client kubernetes.Interface
	Logger *slog.Logger
	Clock  clockwork.Clock
	// StorageDir holds this node's local-path volumes (the agent's
	// --storage-dir); empty: none are made or removed here.
	StorageDir string
	// TrustAnchorSeed keys the order of the certificates in a
	// clusterTrustBundle file; zero picks a random one, so the order
	// changes when the agent restarts, as kubelet's does.
	TrustAnchorSeed uint64
	// Images mounts image volumes' views; nil: image volumes fail to
	// mount with an error saying so.
	Images ImageViews
}

// Manager sets up and tears down pods' volumes.
type Manager struct {
	client kubernetes.Interface
	log    *slog.Logger
	clock  clockwork.Clock

	storageDir string
	// quota makes, bounds and removes local-path volume directories
	// (nil without a storage directory).
	quota      *quota.Dir
	anchorSeed uint64
	images     ImageViews

	mu     sync.Mutex
	tokens map[string]token // by pod UID, audience and lifetime
	// podCerts holds podCertificate sources' credentials by podCertKey.
	podCerts map[string]podCert
	// local maps a local volume to the pods it is mounted for; claims
	// holds each pod's mounted local volumes by name.
	local  map[string]map[string]bool
	claims map[string]map[string]ClaimVolume
}

type token struct {
	value  string
	issued time.Time
	ttl    time.Duration
}

// New returns a Manager.
func New(opts Options) *Manager {
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.TrustAnchorSeed == 0 {
		opts.TrustAnchorSeed = rand.Uint64()
	}
	m := &Manager{client: opts.Client, log: opts.Logger, clock: opts.Clock, storageDir: opts.StorageDir, anchorSeed: opts.TrustAnchorSeed, images: opts.Images,
		tokens: map[string]token{}, podCerts: map[string]podCert{}, local: map[string]map[string]bool{}, claims: map[string]map[string]ClaimVolume{}}
	if opts.StorageDir != "" {
		m.quota = quota.New(opts.StorageDir, opts.Logger)
	}
	return m
}

// Volume is a set-up volume.
type Volume struct {
	// Path is the directory (or file, for a hostPath) on the node.
	Path string
	// ReadOnly volumes are mounted read-only whatever the mount says
	// (configMap, secret, downwardAPI, projected and image, as in kubelet).
	ReadOnly bool
	// Image: a view of an image, where a subPath must exist and be a
	// directory (nothing can be created in it).
	Image bool
}

// Env is what the downward API needs beyond the pod, and the node's name
// and labels, which a PersistentVolume's node affinity must select.
type Env struct {
	PodIPs, HostIPs []string
	Allocatable     v1.ResourceList
	NodeName        string
	NodeLabels      map[string]string
}

// Dir is where a pod's volumes live under the pod's directory.
func Dir(podDir string) string { return filepath.Join(podDir, "volumes") }

// Setup materializes every volume of pod under podDir and returns them by
// name, except image volumes (see MountImage). It is idempotent and
// refreshes what changed (a ConfigMap's data, a token due for rotation);
// call it on every sync of the pod.
func (m *Manager) Setup(ctx context.Context, pod *v1.Pod, podDir string, env Env) (map[string]Volume, error) {
	out := make(map[string]Volume, len(pod.Spec.Volumes))
	gid := -1
	if sc := pod.Spec.SecurityContext; sc != nil && sc.FSGroup != nil {
		gid = int(*sc.FSGroup)
	}
	for i := range pod.Spec.Volumes {
		vol := &pod.Spec.Volumes[i]
		if vol.Image != nil {
			continue
		}
		v, err := m.setup(ctx, pod, vol, podDir, env, gid)
		if err != nil {
			return nil, fmt.Errorf("volume %q: %w", vol.Name, err)
		}
		out[vol.Name] = v
	}
	return out, nil
}

func (m *Manager) setup(ctx context.Context, pod *v1.Pod, vol *v1.Volume, podDir string, env Env, gid int) (Volume, error) {
	dir := func(kind string) string { return filepath.Join(Dir(podDir), "kubernetes.io~"+kind, vol.Name) }
	src := vol.VolumeSource
	switch {
	case src.EmptyDir != nil:
		return m.emptyDir(src.EmptyDir, dir("empty-dir"), env, gid)
	case src.HostPath != nil:
		return hostPath(src.HostPath)
	case src.PersistentVolumeClaim != nil || src.Ephemeral != nil:
		return m.claimVolume(ctx, pod, vol, podDir, env, gid)
	case src.ConfigMap != nil:
		payload, err := m.configMapPayload(ctx, pod.Namespace, src.ConfigMap.LocalObjectReference.Name, src.ConfigMap.Items, src.ConfigMap.DefaultMode, src.ConfigMap.Optional)
		if err != nil {
			return Volume{}, err
		}
		return project(dir("configmap"), payload, gid, false)
	case src.Secret != nil:
		payload, err := m.secretPayload(ctx, pod.Namespace, src.Secret.SecretName, src.Secret.Items, src.Secret.DefaultMode, src.Secret.Optional)
		if err != nil {
			return Volume{}, err
		}
		return project(dir("secret"), payload, gid, true)
	case src.DownwardAPI != nil:
		payload, err := downwardPayload(pod, src.DownwardAPI.Items, src.DownwardAPI.DefaultMode, env)
		if err != nil {
			return Volume{}, err
		}
		return project(dir("downward-api"), payload, gid, false)
	case src.Projected != nil:
		payload, err := m.projectedPayload(ctx, pod, vol.Name, src.Projected, env)
		if err != nil {
			return Volume{}, err
		}
		return project(dir("projected"), payload, gid, true)
	}
	return Volume{}, errors.New("unsupported volume type: this agent supports emptyDir, hostPath, configMap, secret, downwardAPI, projected, persistentVolumeClaim, ephemeral and image")
}

// project writes a payload atomically; on tmpfs when it holds secrets, so
// they never reach the node's disk.
func project(dir string, payload map[string]File, gid int, onTmpfs bool) (Volume, error) {
	if onTmpfs {
		if err := mountTmpfs(dir, 0); err != nil {
			return Volume{}, err
		}
	}
	if _, err := writeAtomic(dir, payload, gid); err != nil {
		return Volume{}, err
	}
	return Volume{Path: dir, ReadOnly: true}, nil
}

func (m *Manager) emptyDir(ed *v1.EmptyDirVolumeSource, dir string, env Env, gid int) (Volume, error) {
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return Volume{}, err
	}
	if ed.Medium == v1.StorageMediumMemory {
		size := int64(0)
		if ed.SizeLimit != nil && !ed.SizeLimit.IsZero() {
			size = ed.SizeLimit.Value()
		} else if mem, ok := env.Allocatable[v1.ResourceMemory]; ok {
			size = mem.Value()
		}
		if err := mountTmpfs(dir, size); err != nil {
			return Volume{}, err
		}
	}
	mode := os.FileMode(0o777)
	if gid >= 0 {
		if err := os.Chown(dir, -1, gid); err != nil {
			return Volume{}, err
		}
		mode |= os.ModeSetgid
	}
	// Everyone may write an emptyDir, as in kubelet: the containers'
	// users are unknown here.
	if err := os.Chmod(dir, mode); err != nil {
		return Volume{}, err
	}
	return Volume{Path: dir}, nil
}

func mountTmpfs(dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	mounted, err := mountinfo.Mounted(dir)
	if err != nil {
		return err
	}
	if mounted {
		return nil
	}
	opts := "mode=0755"
	if size > 0 {
		opts += ",size=" + strconv.FormatInt(size, 10)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mounting tmpfs at %s: %w", dir, err)
	}
	return nil
}

// Teardown unmounts every mount under the pod's volume and subPath
// directories (tmpfs volumes, subPath binds, image views), removes the
// pod's image views and forgets its tokens and pod certificates.
// The caller removes the directory: a mount left there would let the
// removal reach into a hostPath.
func (m *Manager) Teardown(ctx context.Context, podUID, podDir string) error {
	m.mu.Lock()
	for k := range m.tokens {
		if len(k) > len(podUID) && k[:len(podUID)] == podUID {
			delete(m.tokens, k)
		}
	}
	for k := range m.podCerts {
		if strings.HasPrefix(k, podUID+"/") {
			delete(m.podCerts, k)
		}
	}
	m.mu.Unlock()
	err := errors.Join(UnmountAll(SubPathDir(podDir)), UnmountAll(Dir(podDir)))
	if err == nil && m.images != nil {
		err = m.images.RemoveImageViews(ctx, podUID)
	}
	if err == nil {
		m.untrackLocal(podUID)
	}
	return err
}

// UnmountAll unmounts every mount at or below dir, deepest first.
func UnmountAll(dir string) error {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return err
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].Mountpoint) > len(mounts[j].Mountpoint) })
	var errs []error
	for _, mnt := range mounts {
		if err := unix.Unmount(mnt.Mountpoint, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", mnt.Mountpoint, err))
		}
	}
	return errors.Join(errs...)
}

func hostPath(hp *v1.HostPathVolumeSource) (Volume, error) {
	path := filepath.Clean(hp.Path)
	typ := v1.HostPathUnset
	if hp.Type != nil {
		typ = *hp.Type
	}
	st, err := os.Stat(path)
	exists := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Volume{}, err
	}
	fail := func(what string) (Volume, error) {
		return Volume{}, fmt.Errorf("hostPath type check failed: %s is not a %s", path, what)
	}
	switch typ {
	case v1.HostPathUnset:
	case v1.HostPathDirectoryOrCreate:
		if !exists {
			if err := os.MkdirAll(path, 0o755); err != nil {
				return Volume{}, err
			}
		} else if !st.IsDir() {
			return fail("directory")
		}
	case v1.HostPathFileOrCreate:
		if !exists {
			f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				return Volume{}, fmt.Errorf("creating %s: %w", path, err)
			}
			f.Close()
		} else if st.IsDir() {
			return fail("file")
		}
	case v1.HostPathDirectory:
		if !exists || !st.IsDir() {
			return fail("directory")
		}
	case v1.HostPathFile:
		if !exists || !st.Mode().IsRegular() {
			return fail("file")
		}
	case v1.HostPathSocket:
		if !exists || st.Mode()&os.ModeSocket == 0 {
			return fail("socket")
		}
	case v1.HostPathCharDev:
		if !exists || st.Mode()&os.ModeCharDevice == 0 {
			return fail("character device")
		}
	case v1.HostPathBlockDev:
		if !exists || st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 {
			return fail("block device")
		}
	default:
		return Volume{}, fmt.Errorf("hostPath type %q is not supported", typ)
	}
	return Volume{Path: path}, nil
}

// serviceAccountToken returns a token bound to the pod, from the cache
// unless it is due for rotation: past 80% of its lifetime or a day old, as
// kubelet rotates them.
func (m *Manager) serviceAccountToken(ctx context.Context, pod *v1.Pod, src *v1.ServiceAccountTokenProjection) (string, error) {
	exp := int64(3600)
	if src.ExpirationSeconds != nil {
		exp = *src.ExpirationSeconds
	}
	ttl := time.Duration(exp) * time.Second
	key := string(pod.UID) + "/" + src.Audience + "/" + strconv.FormatInt(exp, 10)
	now := m.clock.Now()
	m.mu.Lock()
	t, ok := m.tokens[key]
	m.mu.Unlock()
	if ok && now.Before(t.issued.Add(t.ttl*8/10)) && now.Before(t.issued.Add(24*time.Hour)) {
		return t.value, nil
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
		ExpirationSeconds: &exp,
		BoundObjectRef:    &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if src.Audience != "" {
		req.Spec.Audiences = []string{src.Audience}
	}
	resp, err := m.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		if ok && now.Before(t.issued.Add(t.ttl)) {
			m.log.Warn("rotating a service-account token failed; keeping the current one", "pod", pod.Namespace+"/"+pod.Name, "err", err)
			return t.value, nil
		}
		return "", fmt.Errorf("requesting a token for service account %s/%s: %w", pod.Namespace, sa, err)
	}
	m.mu.Lock()
	m.tokens[key] = token{value: resp.Status.Token, issued: now, ttl: ttl}
	m.mu.Unlock()
	if ok {
		m.log.Info("rotated service-account token", "pod", pod.Namespace+"/"+pod.Name, "serviceAccount", sa)
	}
	return resp.Status.Token, nil
}

// notFound reports an API 404.
func notFound(err error) bool { return apierrors.IsNotFound(err) }
