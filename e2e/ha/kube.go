package ha

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// kubeNamespace holds the workload's ConfigMaps.
const kubeNamespace = "default"

// RESTConfig is the admin configuration of this server's own Kubernetes
// API (on its bridge address), without client-side rate limits.
func (s *Server) RESTConfig(t testing.TB) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(s.dataDir, "admin.kubeconfig"))
	if err != nil {
		t.Fatalf("loading %s's admin kubeconfig: %v", s.Name, err)
	}
	cfg.Host = "https://" + s.IP + ":6443"
	cfg.QPS, cfg.Burst = -1, 0
	cfg.Timeout = 30 * time.Second
	return cfg
}

// Clientset is an admin client of this server's own Kubernetes API (on its
// bridge address), without client-side rate limits.
func (s *Server) Clientset(t testing.TB) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(s.RESTConfig(t))
	if err != nil {
		t.Fatalf("clientset for %s: %v", s.Name, err)
	}
	return cs
}

// kubeRegister keeps each register in the data of a ConfigMap: a read is a
// GET (a quorum read), a write an unconditional update, a compare-and-swap
// an update with the resourceVersion the client last read as precondition
// (409 Conflict when it no longer holds).
type kubeRegister struct {
	cms typedcorev1.ConfigMapInterface
}

func configMap(name, value, rv string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: rv},
		Data:       map[string]string{"v": value},
	}
}

func (r kubeRegister) do(ctx context.Context, in RegisterInput, prev *readState, _ bool) (RegisterOutput, error) {
	switch in.Kind {
	case OpRead:
		cm, err := r.cms.Get(ctx, in.Key, metav1.GetOptions{})
		if err != nil {
			return RegisterOutput{}, err
		}
		rev, err := strconv.ParseInt(cm.ResourceVersion, 10, 64)
		if err != nil {
			return RegisterOutput{}, fmt.Errorf("resourceVersion %q of %s: %w", cm.ResourceVersion, in.Key, err)
		}
		return RegisterOutput{Value: cm.Data["v"], Rev: rev}, nil
	case OpWrite:
		cm, err := r.cms.Update(ctx, configMap(in.Key, in.Value, ""), metav1.UpdateOptions{})
		if err != nil {
			return RegisterOutput{}, err
		}
		rev, _ := strconv.ParseInt(cm.ResourceVersion, 10, 64)
		return RegisterOutput{OK: true, Rev: rev}, nil
	default:
		cm, err := r.cms.Update(ctx, configMap(in.Key, in.Value, strconv.FormatInt(prev.rev, 10)), metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return RegisterOutput{OK: false}, nil
		}
		if err != nil {
			return RegisterOutput{}, err
		}
		rev, _ := strconv.ParseInt(cm.ResourceVersion, 10, 64)
		return RegisterOutput{OK: true, Rev: rev}, nil
	}
}

// InitConfigMaps creates every workload ConfigMap with InitialValue,
// waiting for the first server's API to accept them.
func InitConfigMaps(t testing.TB, c *Cluster, cfg CASConfig) {
	t.Helper()
	cfg.defaults()
	cms := c.Servers[0].Clientset(t).CoreV1().ConfigMaps(kubeNamespace)
	deadline := time.Now().Add(2 * time.Minute)
	for _, k := range cfg.keys() {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := cms.Create(ctx, configMap(k, InitialValue, ""), metav1.CreateOptions{})
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("creating ConfigMap %s: %v", k, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// StartKubeCAS starts ClientsPerServer clients on every server's
// Kubernetes API, doing what StartCAS does on ConfigMaps.
func StartKubeCAS(t testing.TB, c *Cluster, cfg CASConfig) *CASWorkload {
	t.Helper()
	var regs []register
	for _, s := range c.Servers {
		regs = append(regs, kubeRegister{s.Clientset(t).CoreV1().ConfigMaps(kubeNamespace)})
	}
	return startWorkload(t, cfg, regs)
}

// CheckConfigMapsAgree reads every workload ConfigMap through every
// server's API and fails unless all servers return the same value and
// resourceVersion, and that version is at least the newest acknowledged
// write's.
func CheckConfigMapsAgree(t testing.TB, c *Cluster, cfg CASConfig, h *History) {
	t.Helper()
	cfg.defaults()
	newest := map[string]int64{}
	for _, a := range h.Acks {
		newest[a.Key] = max(newest[a.Key], a.Rev)
	}
	for _, k := range cfg.keys() {
		var first *corev1.ConfigMap
		for _, s := range c.Servers {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			cm, err := s.Clientset(t).CoreV1().ConfigMaps(kubeNamespace).Get(ctx, k, metav1.GetOptions{})
			cancel()
			if err != nil {
				t.Errorf("reading ConfigMap %s through %s: %v", k, s.Name, err)
				continue
			}
			rv, _ := strconv.ParseInt(cm.ResourceVersion, 10, 64)
			if rv < newest[k] {
				t.Errorf("%s serves ConfigMap %s at resourceVersion %d, older than the acknowledged %d", s.Name, k, rv, newest[k])
			}
			if first == nil {
				first = cm
			} else if cm.ResourceVersion != first.ResourceVersion || cm.Data["v"] != first.Data["v"] {
				t.Errorf("ConfigMap %s: %s serves %s@%s, %s served %s@%s", k, s.Name, cm.Data["v"], cm.ResourceVersion,
					c.Servers[0].Name, first.Data["v"], first.ResourceVersion)
			}
		}
	}
}
