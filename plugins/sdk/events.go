package sdk

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// EventRule is the permission an EventRecorder needs; add it to a plugin's
// Rules.
var EventRule = rbacv1.PolicyRule{
	APIGroups: []string{"", "events.k8s.io"},
	Resources: []string{"events"},
	Verbs:     []string{"create", "patch", "update"},
}

// NewEventRecorder returns a recorder that writes Events (the ones `kubectl
// describe` lists) as component, the name upstream's controller uses as its
// event source. The recorder aggregates repeats like kube-controller-manager's
// does, and stops when ctx is cancelled.
func NewEventRecorder(ctx context.Context, client kubernetes.Interface, component string) record.EventRecorder {
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	go func() {
		<-ctx.Done()
		b.Shutdown()
	}()
	return b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component})
}
