package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/keelson/keelson/bench/internal/keelsonproc"
	"github.com/keelson/keelson/internal/testproc"
	"github.com/keelson/keelson/plugins/builtin"
)

// side is one set of controllers under test.
type side interface {
	label() string
	// start starts a fresh server with w's controllers and returns it, the
	// controllers' process ids, and how to stop everything.
	start(ctx context.Context, o options, w workload) (*keelsonproc.Server, []int, func(), error)
}

// limits are client-side API limits; zero keeps the controller's own.
type limits struct{ qps, burst int }

func (l limits) String() string {
	if l.qps == 0 {
		return "default limits"
	}
	return fmt.Sprintf("%d qps, burst %d", l.qps, l.burst)
}

type keelsonSide struct{ limits }

func (k keelsonSide) label() string { return "keelson plugins, " + k.limits.String() }

func (k keelsonSide) start(ctx context.Context, o options, w workload) (*keelsonproc.Server, []int, func(), error) {
	controllers := w.plugins()
	var args []string
	for _, name := range builtin.Names() {
		if !slices.Contains(controllers, name) {
			args = append(args, "--disable-plugin", name)
		}
	}
	if k.qps > 0 {
		for _, name := range controllers {
			args = append(args, "--plugin-config", fmt.Sprintf(`%s={"kubeAPIQPS":%d,"kubeAPIBurst":%d}`, name, k.qps, k.burst))
		}
	}
	srv, err := keelsonproc.Start(ctx, o.keelsonBin, o.workDir, 3*time.Minute, args...)
	if err != nil {
		return nil, nil, nil, err
	}
	pids, err := pluginPIDs(ctx, srv, controllers)
	if err != nil {
		srv.Stop()
		return nil, nil, nil, err
	}
	return srv, pids, srv.Stop, nil
}

var pluginGVR = schema.GroupVersionResource{Group: "keelson.io", Version: "v1alpha1", Resource: "plugins"}

// pluginPIDs waits until the named plugins run and are ready, and returns
// their process ids.
func pluginPIDs(ctx context.Context, srv *keelsonproc.Server, names []string) ([]int, error) {
	dyn, err := dynamic.NewForConfig(srv.REST)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	var pids []int
	for _, name := range names {
		for {
			obj, err := dyn.Resource(pluginGVR).Get(ctx, name, metav1.GetOptions{})
			if err == nil {
				ready, _, _ := unstructured.NestedBool(obj.Object, "status", "ready")
				pid, _, _ := unstructured.NestedInt64(obj.Object, "status", "pid")
				if ready && pid > 0 {
					pids = append(pids, int(pid))
					break
				}
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("plugin %s not ready within 2m (last error %v)", name, err)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return pids, nil
}

type kcmSide struct {
	bin string
	limits
}

func (k kcmSide) label() string { return "kube-controller-manager, " + k.limits.String() }

func (k kcmSide) start(ctx context.Context, o options, w workload) (*keelsonproc.Server, []int, func(), error) {
	srv, err := keelsonproc.Start(ctx, o.keelsonBin, o.workDir, 3*time.Minute, "--disable-plugin", "*")
	if err != nil {
		return nil, nil, nil, err
	}
	args := []string{
		"--kubeconfig", srv.Kubeconfig,
		"--controllers", w.kcmControllers(),
		"--use-service-account-credentials=false",
		"--leader-elect=false",
		"--secure-port=0",
	}
	if k.qps > 0 {
		args = append(args, "--kube-api-qps", strconv.Itoa(k.qps), "--kube-api-burst", strconv.Itoa(k.burst))
	}
	proc, err := testproc.Start(testproc.Spec{Name: "kube-controller-manager", Bin: k.bin, Args: args, LogPath: filepath.Join(srv.Dir, "kcm.log"), ProcessGroup: true})
	if err != nil {
		srv.Stop()
		return nil, nil, nil, err
	}
	stop := func() {
		proc.Stop(20 * time.Second)
		if os.Getenv("WORKLOADBENCH_KEEP_LOGS") != "" {
			fmt.Fprintln(os.Stderr, "kube-controller-manager log:", filepath.Join(srv.Dir, "kcm.log"))
			return
		}
		srv.Stop()
	}
	return srv, []int{proc.PID()}, stop, nil
}
