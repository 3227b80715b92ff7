package main

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// workload is what both sides hold: Deployments spread over ten
// namespaces, each with a Service selecting its pods. No node exists, so
// the pods stay Pending; the controllers still cache and track them all.
type workload struct {
	deployments, replicas int
}

const namespaces = 10

func (w workload) pods() int { return w.deployments * w.replicas }

func (w workload) create(ctx context.Context, cs kubernetes.Interface) error {
	for i := range namespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("mem-%d", i)}}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("namespace %s: %w", ns.Name, err)
		}
	}
	for i := range w.deployments {
		ns, name := fmt.Sprintf("mem-%d", i%namespaces), fmt.Sprintf("app-%d", i)
		labels := map[string]string{"app": name}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(int32(w.replicas)),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{
						Name: "app", Image: "registry.invalid/app:1",
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					}}},
				},
			},
		}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{
				Port: 80, TargetPort: intstr.FromString("http"),
			}}},
		}
		if err := retry(ctx, func() error {
			_, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
			return err
		}); err != nil {
			return fmt.Errorf("deployment %s/%s: %w", ns, name, err)
		}
		if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("service %s/%s: %w", ns, name, err)
		}
	}
	return nil
}

// retry retries f while the namespace's default ServiceAccount may not
// exist yet (a fresh namespace refuses nothing but pods; this guards
// against a slow API at start).
func retry(ctx context.Context, f func() error) error {
	var err error
	for range 20 {
		if err = f(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return err
}

// waitPods waits until every pod of the workload exists.
func (w workload) waitPods(ctx context.Context, cs kubernetes.Interface, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := 0
	for time.Now().Before(deadline) {
		n := 0
		opts := metav1.ListOptions{Limit: 1000}
		for {
			list, err := cs.CoreV1().Pods("").List(ctx, opts)
			if err != nil {
				return err
			}
			n += len(list.Items)
			if list.Continue == "" {
				break
			}
			opts.Continue = list.Continue
		}
		if n >= w.pods() {
			return nil
		}
		last = n
		time.Sleep(5 * time.Second)
	}
	return fmt.Errorf("only %d of %d pods exist after %s", last, w.pods(), timeout)
}
