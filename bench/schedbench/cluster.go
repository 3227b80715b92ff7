package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/bench/internal/configmapload"
	"github.com/keelson/keelson/bench/internal/keelsonproc"
)

const (
	namespace = "schedbench"
	// stopTimeout is how long a scheduler gets to exit after SIGTERM.
	stopTimeout = 30 * time.Second
	// zones spreads the nodes over this many topology zones.
	zones = 4
)

// clusterClient creates and removes the bench's nodes and pods.
type clusterClient struct {
	cs      kubernetes.Interface
	workers int
	nodes   int
}

func newClusterClient(s *keelsonproc.Server, workers int) (*clusterClient, error) {
	cfg := rest.CopyConfig(s.REST)
	configmapload.Tune(cfg, "schedbench")
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	return &clusterClient{cs: cs, workers: workers}, nil
}

// prepareNamespace creates the bench namespace and its default
// ServiceAccount (no controller runs to create it, and admission wants it).
func (c *clusterClient) prepareNamespace(ctx context.Context) error {
	_, err := c.cs.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", namespace, err)
	}
	_, err = c.cs.CoreV1().ServiceAccounts(namespace).Create(ctx, &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the default ServiceAccount: %w", err)
	}
	return nil
}

func nodeName(i int) string { return fmt.Sprintf("kwok-node-%05d", i) }

// fakeNode is a kwok-style node: 32 cpu, 256 GiB, 110 pods, Ready, in one
// of four zones, with no kubelet behind it.
func fakeNode(i int) *v1.Node {
	name := nodeName(i)
	alloc := v1.ResourceList{
		v1.ResourceCPU: resource.MustParse("32"), v1.ResourceMemory: resource.MustParse("256Gi"),
		v1.ResourcePods: resource.MustParse("110"),
	}
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			v1.LabelHostname: name, v1.LabelTopologyZone: fmt.Sprintf("zone-%d", i%zones), "type": "kwok",
		}},
		Status: v1.NodeStatus{
			Allocatable: alloc, Capacity: alloc,
			Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue, LastHeartbeatTime: metav1.Now(), Reason: "KubeletReady"}},
		},
	}
}

// ensureNodes grows the cluster to total nodes. Admission taints each new
// node not-ready; the node lifecycle controller, which would lift the taint
// once the node reports Ready, does not run here, so the bench lifts it.
func (c *clusterClient) ensureNodes(ctx context.Context, total int) error {
	err := c.parallel(ctx, c.nodes, total, func(ctx context.Context, i int) error {
		n, err := c.cs.CoreV1().Nodes().Create(ctx, fakeNode(i), metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating node %s: %w", nodeName(i), err)
		}
		if len(n.Spec.Taints) == 0 {
			return nil
		}
		n.Spec.Taints = nil
		if _, err := c.cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("lifting the not-ready taint of node %s: %w", n.Name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.nodes = total
	return nil
}

func podName(i int) string { return fmt.Sprintf("pod-%05d", i) }

// benchPod is what every pod asks: 100m cpu and 128 MiB, no affinity, the
// default scheduler.
func benchPod(i int) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName(i), Namespace: namespace, Labels: map[string]string{"app": "schedbench"}},
		Spec: v1.PodSpec{
			Containers: []v1.Container{{Name: "app", Image: "registry.invalid/pause:3.10", Resources: v1.ResourceRequirements{
				Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m"), v1.ResourceMemory: resource.MustParse("128Mi")},
			}}},
			TerminationGracePeriodSeconds: ptr.To[int64](0),
		},
	}
}

// createPods creates n pending pods while no scheduler runs.
func (c *clusterClient) createPods(ctx context.Context, n int) error {
	return c.parallel(ctx, 0, n, func(ctx context.Context, i int) error {
		if _, err := c.cs.CoreV1().Pods(namespace).Create(ctx, benchPod(i), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating pod %s: %w", podName(i), err)
		}
		return nil
	})
}

// deletePods removes every bench pod at once (no kubelet would confirm a
// graceful deletion), one request each: a single collection delete of
// thousands of pods outlasts the API server's request timeout. It returns
// once a consistent list is empty.
func (c *clusterClient) deletePods(ctx context.Context) error {
	zero := metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}
	for {
		list, err := c.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("listing the bench pods: %w", err)
		}
		if len(list.Items) == 0 {
			return nil
		}
		err = c.parallel(ctx, 0, len(list.Items), func(ctx context.Context, i int) error {
			err := c.cs.CoreV1().Pods(namespace).Delete(ctx, list.Items[i].Name, zero)
			if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("deleting pod %s: %w", list.Items[i].Name, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
}

// parallel runs fn for every i in [from, to) on the client's workers and
// returns the first error.
func (c *clusterClient) parallel(ctx context.Context, from, to int, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range c.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(ctx, i); err != nil {
					cancel(err)
				}
			}
		}()
	}
feed:
	for i := from; i < to; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}
