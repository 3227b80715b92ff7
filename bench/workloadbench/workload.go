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
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/bench/internal/procstat"
	"github.com/keelson/keelson/e2e/podready"
)

// Result is one controller's figures.
type Result struct {
	Controller string  `json:"controller"`
	Phases     []Phase `json:"phases"`
	CPUSeconds float64 `json:"controller_cpu_seconds"`
	PeakRSSKiB int64   `json:"controller_peak_rss_kib"`
	// PSSKiB divides the pages processes share (keelson's plugins all map
	// the keelson binary) among them: the fair sum, at the end.
	PSSKiB int64 `json:"controller_pss_kib"`
	// AnonRSSKiB is the private part of the resident set at the end (heap
	// and stacks, not the binary's shared pages).
	AnonRSSKiB int64  `json:"controller_rss_anon_kib"`
	LoadBefore string `json:"load_before"`
	// FirstReplicaSet names the ReplicaSet of the first template
	// (deployment workload): the same name under both controllers shows
	// the same template hash.
	FirstReplicaSet string `json:"first_replicaset,omitempty"`
}

const ns = "bench"

func measure(ctx context.Context, o options, w workload, s side) (Result, error) {
	r := Result{Controller: s.label(), LoadBefore: procstat.LoadAvg()}
	srv, pids, stop, err := s.start(ctx, o, w)
	if err != nil {
		return r, err
	}
	defer stop()
	client, err := kubernetes.NewForConfig(srv.REST)
	if err != nil {
		return r, err
	}
	if err := prepare(ctx, client, w); err != nil {
		return r, err
	}
	if err := w.setup(ctx, client, o.size); err != nil {
		return r, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if _, err := (podready.Driver{Workers: 16, Complete: w.completes()}).Start(ctx, client, ns); err != nil {
		return r, err
	}
	b := &bench{client: client, size: o.size, timeout: o.timeout,
		factory: informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns))}
	// Shutdown waits for the informers, which stop with ctx: cancel first.
	defer func() {
		cancel()
		b.factory.Shutdown()
	}()
	cpu0, err := cpuSeconds(pids)
	if err != nil {
		return r, err
	}
	if err := w.run(ctx, b); err != nil {
		return r, err
	}
	r.Phases, r.FirstReplicaSet = b.phases, b.firstReplicaSet
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
	for _, p := range r.Phases {
		fmt.Fprintf(os.Stderr, "workloadbench: %s: %s %s\n", r.Controller, p.Name, p.Duration.Round(time.Millisecond))
	}
	return r, nil
}

// prepare creates the namespace with its default ServiceAccount (no
// serviceaccount controller runs) and waits until the workload's
// controllers act on a probe object.
func prepare(ctx context.Context, client kubernetes.Interface, w workload) error {
	if _, err := client.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	acted, err := w.probe(ctx, client)
	if err != nil {
		return err
	}
	if _, err := until(ctx, 3*time.Minute, time.Now(), acted); err != nil {
		return fmt.Errorf("the controllers did not act on a probe %s: %w", w.name(), err)
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
