// Package recorder publishes a controller's Events (core/v1, as
// kube-controller-manager's controllers write them, so `kubectl describe`
// shows them) with client-go's broadcaster, which aggregates repeats.
package recorder

import (
	"context"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// Start returns a recorder whose events name component as their source and
// are written through client until ctx is cancelled; stop flushes nothing
// more and releases the broadcaster (call it when the controller returns).
func Start(ctx context.Context, client kubernetes.Interface, component string) (rec record.EventRecorder, stop func()) {
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	return b.NewRecorder(scheme.Scheme, v1.EventSource{Component: component}), b.Shutdown
}
