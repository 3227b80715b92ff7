package horizontalpodautoscaler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/scale"
)

// scaleTargets reads and writes the /scale subresource of any kind.
type scaleTargets struct {
	mapper meta.RESTMapper
	scales scale.ScalesGetter
	// reset forgets the discovered kinds, so a kind created later (a CRD)
	// is found on the next sync; nil when the mapper is static.
	reset func()
}

// get finds the scale of ref in namespace: the first mapping of its kind
// whose scale can be read; the error of the first mapping otherwise. Errors
// are returned as they came, since upstream's events carry them so.
func (s *scaleTargets) get(ctx context.Context, namespace string, ref autoscalingv2.CrossVersionObjectReference) (*autoscalingv1.Scale, schema.GroupResource, error) {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return nil, schema.GroupResource{}, err
	}
	mappings, err := s.mapper.RESTMappings(schema.GroupKind{Group: gv.Group, Kind: ref.Kind})
	if err != nil {
		if s.reset != nil {
			s.reset()
		}
		return nil, schema.GroupResource{}, err
	}
	var first error
	for _, m := range mappings {
		gr := m.Resource.GroupResource()
		sc, err := s.scales.Scales(namespace).Get(ctx, gr, ref.Name, metav1.GetOptions{})
		if err == nil {
			return sc, gr, nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		first = errors.New("unrecognized resource")
	}
	return nil, schema.GroupResource{}, first
}

// selectors remembers the pod selector of every HPA synced, to find pods
// two HPAs would both scale (upstream refuses to act on them).
type selectors struct {
	mu  sync.Mutex
	all map[string]map[string]labels.Selector // namespace -> HPA name -> selector
}

func newSelectors() *selectors { return &selectors{all: map[string]map[string]labels.Selector{}} }

func (s *selectors) put(namespace, name string, sel labels.Selector) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.all[namespace] == nil {
		s.all[namespace] = map[string]labels.Selector{}
	}
	s.all[namespace][name] = sel
}

func (s *selectors) forget(namespace, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.all[namespace], name)
	if len(s.all[namespace]) == 0 {
		delete(s.all, namespace)
	}
}

// matching returns up to two HPAs (namespace/name, sorted) whose selector
// selects one of pods.
func (s *selectors) matching(namespace string, pods []*corev1.Pod) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var found []string
	for name, sel := range s.all[namespace] {
		for _, p := range pods {
			if sel.Matches(labels.Set(p.Labels)) {
				found = append(found, namespace+"/"+name)
				break
			}
		}
	}
	slices.Sort(found)
	return found[:min(len(found), 2)]
}

// parseSelector checks the scale's selector: present, parseable, and its
// pods scaled by no other HPA. A failure is reported on hpa as upstream.
func (c *controller) parseSelector(hpa *autoscalingv2.HorizontalPodAutoscaler, selector string) (labels.Selector, error) {
	if selector == "" {
		c.events.Event(hpa, corev1.EventTypeWarning, "SelectorRequired", "selector is required")
		c.setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "InvalidSelector", "the HPA target's scale is missing a selector")
		return nil, errors.New("selector is required")
	}
	sel, err := labels.Parse(selector)
	if err != nil {
		msg := fmt.Sprintf("couldn't convert selector into a corresponding internal selector object: %v", err)
		c.events.Event(hpa, corev1.EventTypeWarning, "InvalidSelector", msg)
		c.setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "InvalidSelector", "%s", msg)
		return nil, errors.New(msg)
	}
	c.selectors.put(hpa.Namespace, hpa.Name, sel)
	pods, err := c.pods.Pods(hpa.Namespace).List(sel)
	if err != nil {
		return nil, err
	}
	if others := c.selectors.matching(hpa.Namespace, pods); len(others) > 1 {
		msg := fmt.Sprintf("pods by selector %v are controlled by more than one HPA (e.g. [%s])", selector, strings.Join(others, " "))
		c.events.Event(hpa, corev1.EventTypeWarning, "AmbiguousSelector", msg)
		c.setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "AmbiguousSelector", "%s", msg)
		return nil, errors.New(msg)
	}
	return sel, nil
}
