package nodehost

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/keelson/keelson/plugins/host"
)

// PluginGVR is the Plugin resource the leader's host defines; node plugin
// states are Plugin objects too, one per plugin and node.
var PluginGVR = schema.GroupVersionResource{Group: "keelson.io", Version: "v1alpha1", Resource: "plugins"}

// Labels of a node plugin's status object, which the leader's pruning
// keeps while the plugin is declared.
const (
	LabelNodePlugin = "keelson.io/node-plugin"
	LabelNode       = "keelson.io/node"
)

// statusWriter publishes node plugin states, coalesced per plugin and
// written from one goroutine, skipping writes that change nothing.
type statusWriter struct {
	dyn  dynamic.Interface
	node string
	log  *slog.Logger

	mu      sync.Mutex
	pending map[string]pendingStatus
	written map[string]map[string]any
	kick    chan struct{}
}

type pendingStatus struct {
	st host.PluginStatus
	sp host.Spec
}

func newStatusWriter(dyn dynamic.Interface, node string, log *slog.Logger) *statusWriter {
	return &statusWriter{dyn: dyn, node: node, log: log, pending: map[string]pendingStatus{},
		written: map[string]map[string]any{}, kick: make(chan struct{}, 1)}
}

func (w *statusWriter) set(st host.PluginStatus, sp host.Spec) {
	w.mu.Lock()
	w.pending[st.Name] = pendingStatus{st, sp}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *statusWriter) run(ctx context.Context) {
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-retry:
		}
		retry = nil
		w.mu.Lock()
		batch := w.pending
		w.pending = map[string]pendingStatus{}
		w.mu.Unlock()
		for name, p := range batch {
			if err := w.write(ctx, p); err != nil {
				if ctx.Err() != nil {
					return
				}
				w.log.Warn("writing node plugin status", "plugin", name, "err", err)
				w.mu.Lock()
				if _, newer := w.pending[name]; !newer {
					w.pending[name] = p
				}
				w.mu.Unlock()
				retry = time.After(time.Second)
			}
		}
	}
}

// statusFields renders st as the Plugin object's status.
func (w *statusWriter) statusFields(st host.PluginStatus) map[string]any {
	status := map[string]any{
		"state": string(st.State), "ready": st.Ready, "restarts": int64(st.Restarts),
		"kind": string(st.Kind), "version": st.Version, "node": w.node, "pid": int64(st.PID),
		"since": st.Since.UTC().Format(time.RFC3339),
	}
	for k, v := range map[string]string{"message": st.Message, "lastError": st.LastError} {
		if v != "" {
			status[k] = v
		}
	}
	if st.Backoff > 0 {
		status["backoff"] = st.Backoff.String()
	}
	return status
}

func (w *statusWriter) write(ctx context.Context, p pendingStatus) error {
	name := host.NodeStatusName(p.st.Name, w.node)
	status := w.statusFields(p.st)
	cmp := maps.Clone(status)
	delete(cmp, "since")
	w.mu.Lock()
	same := maps.Equal(w.written[name], cmp)
	w.mu.Unlock()
	if same {
		return nil
	}
	res := w.dyn.Resource(PluginGVR)
	obj, err := res.Get(ctx, name, metav1.GetOptions{})
	create := apierrors.IsNotFound(err)
	if err != nil && !create {
		return err
	}
	if create {
		obj = &unstructured.Unstructured{}
		obj.SetAPIVersion(PluginGVR.GroupVersion().String())
		obj.SetKind("Plugin")
		obj.SetName(name)
	}
	obj.SetLabels(map[string]string{LabelNodePlugin: p.st.Name, LabelNode: w.node})
	spec := map[string]any{"scope": "node", "builtin": p.sp.Builtin}
	if p.sp.Path != "" {
		spec["path"] = p.sp.Path
	}
	if p.sp.SHA256 != "" {
		spec["sha256"] = p.sp.SHA256
	}
	obj.Object["spec"], obj.Object["status"] = spec, status
	if create {
		_, err = res.Create(ctx, obj, metav1.CreateOptions{})
	} else {
		_, err = res.Update(ctx, obj, metav1.UpdateOptions{})
	}
	if err == nil {
		w.mu.Lock()
		w.written[name] = cmp
		w.mu.Unlock()
	}
	return err
}
