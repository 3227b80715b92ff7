package metricsserver

import (
	"net/http"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// metricsSource is what the API reads: the objects (for names, labels and
// selection) and their usage.
type metricsSource interface {
	listNodes(sel labels.Selector) ([]metav1.Object, error)
	getNode(name string) (metav1.Object, error)
	listPods(namespace string, sel labels.Selector) ([]metav1.Object, error)
	getPod(namespace, name string) (metav1.Object, error)
	nodeUsage(name string) (usage, bool)
	podUsage(namespace, name string) (usage, []containerUsage, bool)
	now() time.Time
}

var (
	nodesResource = schema.GroupResource{Group: group, Resource: "nodes"}
	podsResource  = schema.GroupResource{Group: group, Resource: "pods"}
)

func (a *api) groupList(w http.ResponseWriter, r *http.Request) {
	gv := metav1.GroupVersionForDiscovery{GroupVersion: groupVersion.String(), Version: version}
	list := &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"},
		Groups: []metav1.APIGroup{{Name: group, Versions: []metav1.GroupVersionForDiscovery{gv}, PreferredVersion: gv}}}
	writeJSON(w, list)
}

// openAPIDocument is an OpenAPI v2 document without paths: kube-apiserver
// merges every aggregated server's document into its own and logs an
// error every few minutes for a server that has none.
const openAPIDocument = `{"swagger":"2.0","info":{"title":"metrics.k8s.io (keelson metricsserver)","version":"v1beta1"},"paths":{}}`

func openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Etag", `"metricsserver-v1beta1-1"`)
	_, _ = w.Write([]byte(openAPIDocument))
}

func (a *api) group(w http.ResponseWriter, r *http.Request) {
	gv := metav1.GroupVersionForDiscovery{GroupVersion: groupVersion.String(), Version: version}
	writeJSON(w, &metav1.APIGroup{TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"},
		Name: group, Versions: []metav1.GroupVersionForDiscovery{gv}, PreferredVersion: gv})
}

func (a *api) resources(w http.ResponseWriter, r *http.Request) {
	verbs := metav1.Verbs{"get", "list"}
	writeJSON(w, &metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
		GroupVersion: groupVersion.String(),
		APIResources: []metav1.APIResource{
			{Name: "nodes", SingularName: "", Namespaced: false, Kind: "NodeMetrics", Verbs: verbs},
			{Name: "pods", SingularName: "", Namespaced: true, Kind: "PodMetrics", Verbs: verbs},
		}})
}

// selectors reads labelSelector and fieldSelector (metadata.name and,
// for pods, metadata.namespace), refusing a watch, which metrics-server
// does not serve either.
func selectors(r *http.Request) (labels.Selector, fields.Selector, error) {
	q := r.URL.Query()
	if q.Get("watch") == "true" || q.Get("watch") == "1" {
		return nil, nil, apierrors.NewMethodNotSupported(podsResource, "watch")
	}
	ls, err := labels.Parse(q.Get("labelSelector"))
	if err != nil {
		return nil, nil, apierrors.NewBadRequest("labelSelector: " + err.Error())
	}
	fs, err := fields.ParseSelector(q.Get("fieldSelector"))
	if err != nil {
		return nil, nil, apierrors.NewBadRequest("fieldSelector: " + err.Error())
	}
	for _, req := range fs.Requirements() {
		if req.Field != "metadata.name" && req.Field != "metadata.namespace" {
			return nil, nil, apierrors.NewBadRequest("fieldSelector: field " + req.Field + " is not supported: use metadata.name or metadata.namespace")
		}
	}
	return ls, fs, nil
}

func fieldsMatch(fs fields.Selector, o metav1.Object) bool {
	return fs.Matches(fields.Set{"metadata.name": o.GetName(), "metadata.namespace": o.GetNamespace()})
}

func (a *api) listNodes(w http.ResponseWriter, r *http.Request) {
	ls, fs, err := selectors(r)
	if err == nil {
		err = a.authorize(r, "list", "nodes", "", "")
	}
	var nodes []metav1.Object
	if err == nil {
		nodes, err = a.source.listNodes(ls)
	}
	if err != nil {
		writeStatus(w, err)
		return
	}
	list := &metricsv1beta1.NodeMetricsList{}
	for _, n := range nodes {
		if !fieldsMatch(fs, n) {
			continue
		}
		if m, ok := a.nodeMetrics(n); ok {
			list.Items = append(list.Items, *m)
		}
	}
	a.write(w, r, list)
}

func (a *api) getNode(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := a.authorize(r, "get", "nodes", "", name); err != nil {
		writeStatus(w, err)
		return
	}
	n, err := a.source.getNode(name)
	if err != nil {
		writeStatus(w, apierrors.NewNotFound(nodesResource, name))
		return
	}
	m, ok := a.nodeMetrics(n)
	if !ok {
		writeStatus(w, apierrors.NewNotFound(nodesResource, name))
		return
	}
	a.write(w, r, m)
}

func (a *api) nodeMetrics(n metav1.Object) (*metricsv1beta1.NodeMetrics, bool) {
	u, ok := a.source.nodeUsage(n.GetName())
	if !ok {
		return nil, false
	}
	return &metricsv1beta1.NodeMetrics{
		ObjectMeta: metav1.ObjectMeta{Name: n.GetName(), Labels: n.GetLabels(), CreationTimestamp: metav1.NewTime(a.source.now())},
		Timestamp:  metav1.NewTime(u.ts), Window: metav1.Duration{Duration: u.window},
		Usage: resourceList(u),
	}, true
}

func (a *api) listPods(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("namespace")
	ls, fs, err := selectors(r)
	if err == nil {
		err = a.authorize(r, "list", "pods", ns, "")
	}
	var pods []metav1.Object
	if err == nil {
		pods, err = a.source.listPods(ns, ls)
	}
	if err != nil {
		writeStatus(w, err)
		return
	}
	list := &metricsv1beta1.PodMetricsList{}
	for _, p := range pods {
		if !fieldsMatch(fs, p) {
			continue
		}
		if m, ok := a.podMetrics(p); ok {
			list.Items = append(list.Items, *m)
		}
	}
	a.write(w, r, list)
}

func (a *api) getPod(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	if err := a.authorize(r, "get", "pods", ns, name); err != nil {
		writeStatus(w, err)
		return
	}
	p, err := a.source.getPod(ns, name)
	if err != nil {
		writeStatus(w, apierrors.NewNotFound(podsResource, name))
		return
	}
	m, ok := a.podMetrics(p)
	if !ok {
		writeStatus(w, apierrors.NewNotFound(podsResource, name))
		return
	}
	a.write(w, r, m)
}

func (a *api) podMetrics(p metav1.Object) (*metricsv1beta1.PodMetrics, bool) {
	pu, cs, ok := a.source.podUsage(p.GetNamespace(), p.GetName())
	if !ok {
		return nil, false
	}
	m := &metricsv1beta1.PodMetrics{
		ObjectMeta: metav1.ObjectMeta{Name: p.GetName(), Namespace: p.GetNamespace(), Labels: p.GetLabels(),
			CreationTimestamp: metav1.NewTime(a.source.now())},
		Timestamp: metav1.NewTime(pu.ts), Window: metav1.Duration{Duration: pu.window},
		Containers: make([]metricsv1beta1.ContainerMetrics, 0, len(cs)),
	}
	for _, c := range cs {
		m.Containers = append(m.Containers, metricsv1beta1.ContainerMetrics{Name: c.name, Usage: resourceList(c.usage)})
	}
	return m, true
}

// resourceList renders usage as metrics-server does: CPU in nano-cores,
// memory in bytes (shown in Ki).
func resourceList(u usage) v1.ResourceList {
	return v1.ResourceList{
		v1.ResourceCPU:    *resource.NewScaledQuantity(int64(u.nanoCores), resource.Nano),
		v1.ResourceMemory: *resource.NewQuantity(int64(u.memory), resource.BinarySI),
	}
}
