package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/bench/internal/procstat"
	"github.com/keelson/keelson/e2e/podready"
)

// Result is one controller's figures.
type Result struct {
	Controller string        `json:"controller"`
	Created    time.Duration `json:"all_pods_created_ns"`
	Available  time.Duration `json:"available_ns"`
	RolledOut  time.Duration `json:"rolling_update_ns"`
	CPUSeconds float64       `json:"controller_cpu_seconds"`
	PeakRSSKiB int64         `json:"controller_peak_rss_kib"`
	// PSSKiB divides the pages processes share (keelson's plugins all map
	// the keelson binary) among them: the fair sum, at the end.
	PSSKiB int64 `json:"controller_pss_kib"`
	// AnonRSSKiB is the private part of the resident set at the end (heap
	// and stacks, not the binary's shared pages).
	AnonRSSKiB int64  `json:"controller_rss_anon_kib"`
	LoadBefore string `json:"load_before"`
	// FirstReplicaSet names the ReplicaSet of the first template: the
	// same name under both controllers shows the same template hash.
	FirstReplicaSet string `json:"first_replicaset"`
}

const ns = "bench"

func measure(ctx context.Context, o options, s side) (Result, error) {
	r := Result{Controller: s.label(), LoadBefore: procstat.LoadAvg()}
	srv, pids, stop, err := s.start(ctx, o)
	if err != nil {
		return r, err
	}
	defer stop()
	client, err := kubernetes.NewForConfig(srv.REST)
	if err != nil {
		return r, err
	}
	if err := prepare(ctx, client); err != nil {
		return r, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if _, err := (podready.Driver{Workers: 16}).Start(ctx, client, ns); err != nil {
		return r, err
	}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns))
	podInf := factory.Core().V1().Pods().Informer()
	depInf := factory.Apps().V1().Deployments().Informer()
	factory.Start(ctx.Done())
	// Shutdown waits for the informers, which stop with ctx: cancel first.
	defer func() {
		cancel()
		factory.Shutdown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), podInf.HasSynced, depInf.HasSynced) {
		return r, fmt.Errorf("bench caches did not sync")
	}
	cpu0, err := cpuSeconds(pids)
	if err != nil {
		return r, err
	}

	start := time.Now()
	if _, err := client.AppsV1().Deployments(ns).Create(ctx, benchDeployment(o.replicas), metav1.CreateOptions{}); err != nil {
		return r, fmt.Errorf("creating the deployment: %w", err)
	}
	if r.Created, err = until(ctx, o.timeout, start, func() bool { return livePods(podInf) >= o.replicas }); err != nil {
		return r, fmt.Errorf("waiting for %d pods (have %d): %w", o.replicas, livePods(podInf), err)
	}
	if r.Available, err = until(ctx, o.timeout, start, func() bool { return rolledOut(depInf, o.replicas, 1) }); err != nil {
		return r, fmt.Errorf("waiting for the deployment to be available: %w", err)
	}
	r.FirstReplicaSet, err = firstReplicaSet(ctx, client)
	if err != nil {
		return r, err
	}

	start = time.Now()
	patch := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"registry.invalid/app:2"}]}}}}`)
	updated, err := client.AppsV1().Deployments(ns).Patch(ctx, "bench", types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return r, fmt.Errorf("updating the image: %w", err)
	}
	if r.RolledOut, err = until(ctx, o.timeout, start, func() bool { return rolledOut(depInf, o.replicas, updated.Generation) }); err != nil {
		return r, fmt.Errorf("waiting for the rolling update: %w", err)
	}

	cpu1, err := cpuSeconds(pids)
	if err != nil {
		return r, err
	}
	r.CPUSeconds = cpu1 - cpu0
	for _, pid := range pids {
		m, err := procstat.ReadMemory(pid)
		if err != nil {
			return r, err
		}
		r.PeakRSSKiB += m.VmHWMKiB
		r.AnonRSSKiB += m.RssAnonKiB
		pss, err := procstat.ReadPSS(pid)
		if err != nil {
			return r, err
		}
		r.PSSKiB += pss
	}
	fmt.Fprintf(os.Stderr, "workloadbench: %s: created %s, available %s, rolled out %s\n", r.Controller,
		r.Created.Round(time.Millisecond), r.Available.Round(time.Millisecond), r.RolledOut.Round(time.Millisecond))
	return r, nil
}

// prepare creates the namespace with its default ServiceAccount (no
// serviceaccount controller runs) and waits until the controllers act: a
// probe Deployment of 0 replicas gets a ReplicaSet whose status is written.
func prepare(ctx context.Context, client kubernetes.Interface) error {
	if _, err := client.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	probe := benchDeployment(0)
	probe.Name = "probe"
	probe.Spec.Selector.MatchLabels["app"] = "probe"
	probe.Spec.Template.Labels["app"] = "probe"
	if _, err := client.AppsV1().Deployments(ns).Create(ctx, probe, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := until(ctx, 3*time.Minute, time.Now(), func() bool {
		list, err := client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=probe"})
		return err == nil && len(list.Items) == 1 && list.Items[0].Status.ObservedGeneration >= 1
	})
	if err != nil {
		return fmt.Errorf("the controllers did not act on a probe deployment: %w", err)
	}
	return nil
}

func benchDeployment(replicas int) *appsv1.Deployment {
	n := int32(replicas)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &n,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "bench"}},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "bench"}},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "app", Image: "registry.invalid/app:1"}}},
			},
		},
	}
}

// until polls cond every 20 ms (a bench, not a test: the figures are
// seconds) and returns the time since start when it first held.
func until(ctx context.Context, timeout time.Duration, start time.Time, cond func() bool) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return 0, errTimeout
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return time.Since(start), nil
}

func livePods(inf cache.SharedIndexInformer) int {
	n := 0
	for _, o := range inf.GetStore().List() {
		if p := o.(*v1.Pod); p.DeletionTimestamp == nil && p.Labels["app"] == "bench" {
			n++
		}
	}
	return n
}

// rolledOut is `kubectl rollout status` succeeding for generation gen (or
// later): it observed, every replica updated and available, no old replica
// left.
func rolledOut(inf cache.SharedIndexInformer, replicas int, gen int64) bool {
	obj, ok, _ := inf.GetStore().GetByKey(ns + "/bench")
	if !ok {
		return false
	}
	d := obj.(*appsv1.Deployment)
	st, n := d.Status, int32(replicas)
	return d.Generation >= gen && st.ObservedGeneration >= d.Generation &&
		st.UpdatedReplicas == n && st.Replicas == n && st.AvailableReplicas == n
}

func firstReplicaSet(ctx context.Context, client kubernetes.Interface) (string, error) {
	list, err := client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=bench"})
	if err != nil || len(list.Items) != 1 {
		return "", fmt.Errorf("listing the deployment's replica set: %d found, %v", len(list.Items), err)
	}
	return list.Items[0].Name, nil
}

// cpuSeconds sums the user and system CPU time of pids from /proc/PID/stat.
func cpuSeconds(pids []int) (float64, error) {
	const ticksPerSecond = 100 // USER_HZ on Linux
	var total float64
	for _, pid := range pids {
		f, err := os.Open(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, err
		}
		line, err := bufio.NewReader(f).ReadString('\n')
		f.Close()
		if err != nil {
			return 0, fmt.Errorf("reading /proc/%d/stat: %w", pid, err)
		}
		// Fields after the parenthesised command name; utime and stime are
		// the 14th and 15th of the whole line.
		fields := strings.Fields(line[strings.LastIndexByte(line, ')')+2:])
		if len(fields) < 13 {
			return 0, fmt.Errorf("/proc/%d/stat: %q", pid, line)
		}
		for _, f := range fields[11:13] {
			t, err := strconv.ParseFloat(f, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/stat field %q: %w", pid, f, err)
			}
			total += t / ticksPerSecond
		}
	}
	return total, nil
}
