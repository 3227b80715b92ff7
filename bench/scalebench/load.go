package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/keelson/keelson/internal/testproc"
)

// kwokAnnotation marks the nodes kwok manages (its
// --manage-nodes-with-annotation-selector).
const kwokAnnotation = "kwok.x-k8s.io/node"

// defaultKwokPodWorkers is how many pod stages kwok plays at once. kwok's
// own default, 4, makes every pod's Running wait in one queue of four
// writers for the whole cluster, where each real node's kubelet writes its
// own pods' status: a Deployment of 250 appearing at once then waits for
// 63 writes in a row, which measures the simulator, not the control plane.
const defaultKwokPodWorkers = 16

// startKwok runs kwok against the side's API with kwok's default stages,
// Lease heartbeats in kube-node-lease and o.kwokPodWorkers pod workers.
func startKwok(o options, s *side) (*testproc.Process, error) {
	config, err := kwokConfigFile(o, s.dir)
	if err != nil {
		return nil, err
	}
	return testproc.Start(testproc.Spec{Name: "kwok", Bin: o.kwokBin, LogPath: filepath.Join(s.dir, "kwok.log"), ProcessGroup: true,
		Args: []string{"--kubeconfig", s.kubeconfig, "--config", config,
			"--manage-nodes-with-annotation-selector", kwokAnnotation + "=fake",
			"--node-lease-duration-seconds", "40",
			"--cidr", "10.128.0.1/10", "--node-ip", "10.127.0.1"}})
}

// kwokConfigFile writes dir/kwok.yaml: o.kwokConfig (kwok's stages and its
// defaulted KwokConfiguration, as bench/kwokref/stages writes them) with
// the pod workers set to o.kwokPodWorkers.
func kwokConfigFile(o options, dir string) (string, error) {
	in, err := os.ReadFile(o.kwokConfig)
	if err != nil {
		return "", fmt.Errorf("kwok stages (make them with scripts/build-refs.sh kwok): %w", err)
	}
	out, err := setKwokPodWorkers(in, o.kwokPodWorkers)
	if err != nil {
		return "", fmt.Errorf("%s: %w", o.kwokConfig, err)
	}
	path := filepath.Join(dir, "kwok.yaml")
	return path, os.WriteFile(path, out, 0o644)
}

// setKwokPodWorkers sets options.podPlayStageParallelism in the config's
// KwokConfiguration document. kwok does not default a configuration it is
// given, so the document must be the complete one the stages command
// writes; a file without it is refused, not completed by hand.
func setKwokPodWorkers(config []byte, workers int) ([]byte, error) {
	docs := strings.Split(string(config), "\n---\n")
	for i, d := range docs {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(d), &m); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if m["kind"] != "KwokConfiguration" {
			continue
		}
		opts, ok := m["options"].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("its KwokConfiguration has no options")
		}
		opts["podPlayStageParallelism"] = workers
		b, err := yaml.Marshal(m)
		if err != nil {
			return nil, err
		}
		docs[i] = strings.TrimSpace(string(b))
		return []byte(strings.Join(docs, "\n---\n") + "\n"), nil
	}
	return nil, fmt.Errorf("no KwokConfiguration with kwok's defaults in it: run scripts/build-refs.sh kwok to write it anew")
}

// kwokNode is a fake node as kwok's documentation writes one: no taint
// (no real node shares the cluster), room for 110 pods.
func kwokNode(name string) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name,
			Annotations: map[string]string{kwokAnnotation: "fake", "node.alpha.kubernetes.io/ttl": "0"},
			Labels:      map[string]string{"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
}

// createNodes creates n kwok nodes at nodeRate per second and waits until
// every one is Ready.
func createNodes(ctx context.Context, log *slog.Logger, cs kubernetes.Interface, n int, nodeRate float64, timeout time.Duration, r *retrier) error {
	p := newPacer(nodeRate, time.Now())
	for i := range n {
		if err := p.wait(ctx, 1); err != nil {
			return err
		}
		name := fmt.Sprintf("kwok-node-%04d", i)
		if err := r.do(ctx, "create node "+name, func() error {
			_, err := cs.CoreV1().Nodes().Create(ctx, kwokNode(name), metav1.CreateOptions{})
			return ignore(err, apierrors.IsAlreadyExists)
		}); err != nil {
			return err
		}
	}
	return poll(ctx, log, timeout, "every kwok node Ready", func() (bool, string) {
		list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "type=kwok"})
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, node := range list.Items {
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		log.Debug("nodes", "ready", ready, "want", n)
		return ready == n, fmt.Sprintf("%d of %d Ready", ready, n)
	})
}

// pacer spaces out work at rate units per second from its start: the k-th
// unit is due at start + k/rate.
type pacer struct {
	rate float64
	next time.Time
}

func newPacer(rate float64, start time.Time) *pacer { return &pacer{rate: rate, next: start} }

// due returns when n more units may start and books them.
func (p *pacer) due(n int) time.Time {
	at := p.next
	p.next = p.next.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
	return at
}

func (p *pacer) wait(ctx context.Context, n int) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(p.due(n))):
		return nil
	}
}

func podLabels(d deployment) map[string]string {
	return map[string]string{loadLabel: "load", "scalebench-deployment": d.Name}
}

func deploymentObject(d deployment) *appsv1.Deployment {
	replicas := d.Replicas
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace, Labels: map[string]string{loadLabel: "load"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: podLabels(d)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels(d)},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{Name: "pause", Image: "registry.k8s.io/pause:3.10",
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("10Mi")}},
						// Restricted, so Pod Security admission has nothing to warn about.
						SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: new(false),
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}},
					SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: new(true), RunAsUser: new(int64(65535)),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					AutomountServiceAccountToken: new(false),
				},
			},
		},
	}
}

func serviceObject(d deployment) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace, Labels: map[string]string{loadLabel: "load"}},
		Spec: corev1.ServiceSpec{Selector: podLabels(d),
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
}

// phase is one step of the load and when it ran.
type phase struct {
	Name       string
	Start, End time.Time
	Err        string `json:",omitempty"`
}

// runLoad creates the plan's namespaces, then its Services and
// Deployments at rate pods per second, waits for every pod Running, scales
// each Deployment, waits again, deletes them, and waits until no pod is
// left. Each step is a phase; the first failure ends the load.
func runLoad(ctx context.Context, log *slog.Logger, cs kubernetes.Interface, t *tracker, p plan, o options, r *retrier) ([]phase, error) {
	created, scaled := p.Pods()
	steps := []struct {
		name string
		act  func(context.Context) error
		want func(live, running int) bool
	}{
		{"create", func(ctx context.Context) error { return createAll(ctx, cs, p, o.rate, r) },
			func(live, running int) bool { return live == created && running == created }},
		{"scale", func(ctx context.Context) error { return scaleAll(ctx, cs, p, o.rate, r) },
			func(live, running int) bool { return live == scaled && running == scaled }},
		{"delete", func(ctx context.Context) error { return deleteAll(ctx, cs, p, o.rate, r) },
			func(live, _ int) bool { return live == 0 }},
	}
	steps = steps[:o.steps]
	for _, ns := range p.Namespaces {
		if err := r.do(ctx, "create namespace "+ns, func() error {
			_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
			return ignore(err, apierrors.IsAlreadyExists)
		}); err != nil {
			return nil, err
		}
	}
	var phases []phase
	for _, st := range steps {
		ph := phase{Name: st.name, Start: time.Now()}
		log.Info("phase", "name", st.name, "pods created", created, "pods scaled", scaled)
		err := st.act(ctx)
		if err == nil {
			err = poll(ctx, log, o.phaseTimeout, st.name+": pods settled", func() (bool, string) {
				live, running := t.counts()
				return st.want(live, running), fmt.Sprintf("%d live, %d Running", live, running)
			})
		}
		ph.End = time.Now()
		log.Info("phase done", "name", st.name, "seconds", ph.End.Sub(ph.Start).Seconds(), "err", err)
		if err != nil {
			ph.Err = err.Error()
			return append(phases, ph), err
		}
		phases = append(phases, ph)
	}
	return phases, nil
}

func createAll(ctx context.Context, cs kubernetes.Interface, p plan, rate float64, r *retrier) error {
	pc := newPacer(rate, time.Now())
	for _, d := range p.Deployments {
		if err := pc.wait(ctx, int(d.Replicas)); err != nil {
			return err
		}
		if err := r.do(ctx, "create service "+d.Namespace+"/"+d.Name, func() error {
			_, err := cs.CoreV1().Services(d.Namespace).Create(ctx, serviceObject(d), metav1.CreateOptions{})
			return ignore(err, apierrors.IsAlreadyExists)
		}); err != nil {
			return err
		}
		if err := r.do(ctx, "create deployment "+d.Namespace+"/"+d.Name, func() error {
			_, err := cs.AppsV1().Deployments(d.Namespace).Create(ctx, deploymentObject(d), metav1.CreateOptions{})
			return ignore(err, apierrors.IsAlreadyExists)
		}); err != nil {
			return err
		}
	}
	return nil
}

func scaleAll(ctx context.Context, cs kubernetes.Interface, p plan, rate float64, r *retrier) error {
	pc := newPacer(rate, time.Now())
	for _, d := range p.Deployments {
		if err := pc.wait(ctx, max(1, abs(int(d.Scaled-d.Replicas)))); err != nil {
			return err
		}
		sc := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace}, Spec: autoscalingv1.ScaleSpec{Replicas: d.Scaled}}
		if err := r.do(ctx, fmt.Sprintf("scale deployment %s/%s to %d", d.Namespace, d.Name, d.Scaled), func() error {
			_, err := cs.AppsV1().Deployments(d.Namespace).UpdateScale(ctx, d.Name, sc, metav1.UpdateOptions{})
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

func deleteAll(ctx context.Context, cs kubernetes.Interface, p plan, rate float64, r *retrier) error {
	pc := newPacer(rate, time.Now())
	bg := metav1.DeletePropagationBackground
	for _, d := range p.Deployments {
		if err := pc.wait(ctx, int(d.Scaled)); err != nil {
			return err
		}
		if err := r.do(ctx, "delete deployment "+d.Namespace+"/"+d.Name, func() error {
			return ignore(cs.AppsV1().Deployments(d.Namespace).Delete(ctx, d.Name, metav1.DeleteOptions{PropagationPolicy: &bg}), apierrors.IsNotFound)
		}); err != nil {
			return err
		}
		if err := r.do(ctx, "delete service "+d.Namespace+"/"+d.Name, func() error {
			return ignore(cs.CoreV1().Services(d.Namespace).Delete(ctx, d.Name, metav1.DeleteOptions{}), apierrors.IsNotFound)
		}); err != nil {
			return err
		}
	}
	return nil
}

// ignore is nil for an error is says is the retried call's own success
// (an AlreadyExists after a create whose answer was lost).
func ignore(err error, is func(error) bool) error {
	if err != nil && is(err) {
		return nil
	}
	return err
}

// retrier retries a failed call of the load a few times, as a controller
// would, and counts the failures: the report prints them, and the load
// only stops when one call keeps failing.
type retrier struct {
	attempts int
	backoff  time.Duration
	failures []string
}

func (r *retrier) do(ctx context.Context, what string, call func() error) error {
	var err error
	for i := range r.attempts {
		if err = call(); err == nil {
			return nil
		}
		r.failures = append(r.failures, fmt.Sprintf("%s: %v", what, err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.backoff << i):
		}
	}
	return fmt.Errorf("%s: %d attempts failed, the last: %w", what, r.attempts, err)
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// poll calls cond every second until it holds, ctx ends or timeout
// passes; the error carries cond's last word.
func poll(ctx context.Context, log *slog.Logger, timeout time.Duration, what string, cond func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	lastLog := time.Now()
	for {
		ok, detail := cond()
		if ok {
			return nil
		}
		if time.Since(lastLog) >= 30*time.Second {
			log.Info("waiting", "for", what, "now", detail)
			lastLog = time.Now()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v (%s)", what, timeout, detail)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (%s)", what, context.Cause(ctx), detail)
		case <-time.After(time.Second):
		}
	}
}
