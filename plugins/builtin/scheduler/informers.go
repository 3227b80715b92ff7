package scheduler

import (
	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/component-helpers/storage/volume"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/placement"
)

// nonTerminalPods selects the pods that hold resources: succeeded and
// failed pods leave the cache (upstream's scheduler watches the same).
const nonTerminalPods = "status.phase!=" + string(v1.PodSucceeded) + ",status.phase!=" + string(v1.PodFailed)

func newInformers(client kubernetes.Interface) *informerSet {
	i := &informerSet{
		podFactory: informers.NewSharedInformerFactoryWithOptions(client, 0,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = nonTerminalPods }),
			informers.WithTransform(slim)),
		factory: informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(slim)),
	}
	i.pods = i.podFactory.Core().V1().Pods()
	return i
}

// slim keeps of each object only what the scheduler reads, so its caches
// stay small: thousands of pods and nodes are held in this process.
func slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *v1.Pod:
		return slimPod(o), nil
	case *v1.Node:
		return slimNode(o), nil
	case *v1.Namespace:
		return &v1.Namespace{ObjectMeta: slimMeta(&o.ObjectMeta, nil)}, nil
	case *v1.PersistentVolumeClaim:
		return slimClaim(o), nil
	case *v1.PersistentVolume:
		return slimVolume(o), nil
	case *storagev1.StorageClass:
		return &storagev1.StorageClass{ObjectMeta: slimMeta(&o.ObjectMeta, nil), Provisioner: o.Provisioner,
			VolumeBindingMode: o.VolumeBindingMode, AllowedTopologies: o.AllowedTopologies}, nil
	case *v1.Service:
		return &v1.Service{ObjectMeta: slimMeta(&o.ObjectMeta, nil), Spec: v1.ServiceSpec{Selector: o.Spec.Selector}}, nil
	case *v1.ReplicationController:
		return &v1.ReplicationController{ObjectMeta: slimMeta(&o.ObjectMeta, nil), Spec: v1.ReplicationControllerSpec{Selector: o.Spec.Selector}}, nil
	case *appsv1.ReplicaSet:
		return &appsv1.ReplicaSet{ObjectMeta: slimMeta(&o.ObjectMeta, nil), Spec: appsv1.ReplicaSetSpec{Selector: o.Spec.Selector}}, nil
	case *appsv1.StatefulSet:
		return &appsv1.StatefulSet{ObjectMeta: slimMeta(&o.ObjectMeta, nil), Spec: appsv1.StatefulSetSpec{Selector: o.Spec.Selector}}, nil
	case *policyv1.PodDisruptionBudget:
		return &policyv1.PodDisruptionBudget{
			ObjectMeta: slimMeta(&o.ObjectMeta, nil),
			Spec:       policyv1.PodDisruptionBudgetSpec{Selector: o.Spec.Selector},
			Status:     policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: o.Status.DisruptionsAllowed, DisruptedPods: o.Status.DisruptedPods},
		}, nil
	}
	return obj, nil
}

// slimMeta keeps identity, labels, ownership and deletion, and the named
// annotations.
func slimMeta(m *metav1.ObjectMeta, annotations []string) metav1.ObjectMeta {
	out := metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Generation: m.Generation, Labels: m.Labels, OwnerReferences: m.OwnerReferences,
		CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp,
	}
	for _, a := range annotations {
		if v, ok := m.Annotations[a]; ok {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[a] = v
		}
	}
	return out
}

func slimNode(n *v1.Node) *v1.Node {
	return &v1.Node{
		ObjectMeta: slimMeta(&n.ObjectMeta, nil),
		Spec:       v1.NodeSpec{Unschedulable: n.Spec.Unschedulable, Taints: n.Spec.Taints},
		Status:     v1.NodeStatus{Allocatable: n.Status.Allocatable, Conditions: slimNodeConditions(n.Status.Conditions)},
	}
}

// slimNodeConditions keeps type and status: heartbeat times change every
// few seconds and nothing here reads them.
func slimNodeConditions(cs []v1.NodeCondition) []v1.NodeCondition {
	out := make([]v1.NodeCondition, len(cs))
	for i, c := range cs {
		out[i] = v1.NodeCondition{Type: c.Type, Status: c.Status}
	}
	return out
}

func slimPod(p *v1.Pod) *v1.Pod {
	s := &p.Spec
	out := &v1.Pod{
		ObjectMeta: slimMeta(&p.ObjectMeta, nil),
		Spec: v1.PodSpec{
			NodeName: s.NodeName, SchedulerName: s.SchedulerName, Priority: s.Priority,
			PreemptionPolicy: s.PreemptionPolicy, NodeSelector: s.NodeSelector, Affinity: s.Affinity,
			Tolerations: s.Tolerations, TopologySpreadConstraints: s.TopologySpreadConstraints,
			SchedulingGates: s.SchedulingGates, Overhead: s.Overhead, Resources: s.Resources,
			Containers: slimContainers(s.Containers), InitContainers: slimContainers(s.InitContainers),
		},
		Status: v1.PodStatus{
			Phase: p.Status.Phase, NominatedNodeName: p.Status.NominatedNodeName, StartTime: p.Status.StartTime,
			Resources:             p.Status.Resources,
			ContainerStatuses:     slimContainerStatuses(p.Status.ContainerStatuses),
			InitContainerStatuses: slimContainerStatuses(p.Status.InitContainerStatuses),
		},
	}
	for _, v := range s.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			out.Spec.Volumes = append(out.Spec.Volumes, v1.Volume{Name: v.Name, VolumeSource: v1.VolumeSource{PersistentVolumeClaim: v.PersistentVolumeClaim}})
		case v.Ephemeral != nil:
			out.Spec.Volumes = append(out.Spec.Volumes, v1.Volume{Name: v.Name, VolumeSource: v1.VolumeSource{Ephemeral: &v1.EphemeralVolumeSource{}}})
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodScheduled || c.Type == v1.DisruptionTarget {
			out.Status.Conditions = append(out.Status.Conditions, c)
		}
	}
	return out
}

// slimContainers keeps what resource accounting and host ports read.
func slimContainers(cs []v1.Container) []v1.Container {
	if len(cs) == 0 {
		return nil
	}
	out := make([]v1.Container, len(cs))
	for i := range cs {
		c := &cs[i]
		out[i] = v1.Container{Name: c.Name, Resources: c.Resources, RestartPolicy: c.RestartPolicy}
		for _, port := range c.Ports {
			if port.HostPort > 0 {
				out[i].Ports = append(out[i].Ports, port)
			}
		}
	}
	return out
}

func slimContainerStatuses(cs []v1.ContainerStatus) []v1.ContainerStatus {
	if len(cs) == 0 {
		return nil
	}
	out := make([]v1.ContainerStatus, len(cs))
	for i := range cs {
		out[i] = v1.ContainerStatus{Name: cs[i].Name, AllocatedResources: cs[i].AllocatedResources, Resources: cs[i].Resources}
	}
	return out
}

// slimClaim keeps what volume binding reads: what the claim asks for (to
// match volumes), its class, binding and selected node.
func slimClaim(o *v1.PersistentVolumeClaim) *v1.PersistentVolumeClaim {
	return &v1.PersistentVolumeClaim{
		ObjectMeta: slimMeta(&o.ObjectMeta, []string{placement.AnnBindCompleted, v1.BetaStorageClassAnnotation, volume.AnnSelectedNode}),
		Spec: v1.PersistentVolumeClaimSpec{
			VolumeName: o.Spec.VolumeName, StorageClassName: o.Spec.StorageClassName, AccessModes: o.Spec.AccessModes,
			Selector: o.Spec.Selector, VolumeMode: o.Spec.VolumeMode, VolumeAttributesClassName: o.Spec.VolumeAttributesClassName,
			Resources: v1.VolumeResourceRequirements{Requests: o.Spec.Resources.Requests},
		},
		Status: v1.PersistentVolumeClaimStatus{Phase: o.Status.Phase},
	}
}

// slimVolume keeps what matching a claim and the node reads.
func slimVolume(o *v1.PersistentVolume) *v1.PersistentVolume {
	return &v1.PersistentVolume{
		ObjectMeta: slimMeta(&o.ObjectMeta, []string{volume.AnnBoundByController, v1.BetaStorageClassAnnotation}),
		Spec: v1.PersistentVolumeSpec{
			NodeAffinity: o.Spec.NodeAffinity, StorageClassName: o.Spec.StorageClassName, Capacity: o.Spec.Capacity,
			AccessModes: o.Spec.AccessModes, ClaimRef: o.Spec.ClaimRef, VolumeMode: o.Spec.VolumeMode,
			VolumeAttributesClassName: o.Spec.VolumeAttributesClassName,
		},
		Status: v1.PersistentVolumeStatus{Phase: o.Status.Phase},
	}
}

// PodTransform is the transform the plugin's informers run, pods among
// them (BenchmarkPodCacheBytes in plugins/builtin measures it).
var PodTransform = slim
