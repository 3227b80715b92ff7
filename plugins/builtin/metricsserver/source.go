package metricsserver

import (
	"time"

	"github.com/jonboulle/clockwork"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// listerSource answers the API from the informers' caches and the store.
type listerSource struct {
	nodes corelisters.NodeLister
	// pods is a metadata-only cache of the pods not finished, indexed by
	// namespace.
	pods  cache.Indexer
	store *store
	clock clockwork.Clock
}

func (s *listerSource) listNodes(sel labels.Selector) ([]metav1.Object, error) {
	nodes, err := s.nodes.List(sel)
	if err != nil {
		return nil, err
	}
	out := make([]metav1.Object, len(nodes))
	for i, n := range nodes {
		out[i] = n
	}
	return out, nil
}

func (s *listerSource) getNode(name string) (metav1.Object, error) { return s.nodes.Get(name) }

func (s *listerSource) listPods(namespace string, sel labels.Selector) ([]metav1.Object, error) {
	var out []metav1.Object
	add := func(obj any) {
		if m, ok := obj.(metav1.Object); ok && sel.Matches(labels.Set(m.GetLabels())) {
			out = append(out, m)
		}
	}
	if namespace == "" {
		for _, obj := range s.pods.List() {
			add(obj)
		}
		return out, nil
	}
	objs, err := s.pods.ByIndex(cache.NamespaceIndex, namespace)
	if err != nil {
		return nil, err
	}
	for _, obj := range objs {
		add(obj)
	}
	return out, nil
}

func (s *listerSource) getPod(namespace, name string) (metav1.Object, error) {
	obj, ok, err := s.pods.GetByKey(namespace + "/" + name)
	if err != nil {
		return nil, err
	}
	m, isMeta := obj.(metav1.Object)
	if !ok || !isMeta {
		return nil, errNotFound
	}
	return m, nil
}

func (s *listerSource) nodeUsage(name string) (usage, bool) { return s.store.node(name) }

func (s *listerSource) podUsage(namespace, name string) (usage, []containerUsage, bool) {
	return s.store.pod(podRef{namespace: namespace, name: name})
}

func (s *listerSource) now() time.Time { return s.clock.Now() }
