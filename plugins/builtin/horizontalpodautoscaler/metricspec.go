package horizontalpodautoscaler

import (
	"context"
	"errors"
	"fmt"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// proposalOf is one metric's replica proposal and status.
type proposalOf struct {
	replicas  int32
	name      string // how the rescale reason names the metric
	timestamp time.Time
	status    autoscalingv2.MetricStatus
}

// metricError is a metric that could not be turned into a proposal: the
// reason is the event's and the ScalingActive condition's.
type metricError struct {
	reason string
	err    error // the event's message
	outer  error // what the sync reports
}

func (e *metricError) Error() string { return e.outer.Error() }
func (e *metricError) Unwrap() error { return e.outer }

func failed(reason string, err error, outerFormat string) *metricError {
	return &metricError{reason: reason, err: err, outer: fmt.Errorf(outerFormat, err)}
}

// target is the scale a proposal is made for.
type target struct {
	specReplicas, statusReplicas int32
	selector                     labels.Selector
}

// proposeFor computes one metric spec's proposal.
func (c *controller) proposeFor(ctx context.Context, hpa *autoscalingv2.HorizontalPodAutoscaler, spec autoscalingv2.MetricSpec, t target) (proposalOf, *metricError) {
	tol := c.tolerancesFor(hpa)
	switch spec.Type {
	case autoscalingv2.ObjectMetricSourceType:
		sel, err := metav1.LabelSelectorAsSelector(spec.Object.Metric.Selector)
		if err != nil {
			return proposalOf{}, failed("FailedGetObjectMetric", err, "failed to get object metric value: %w")
		}
		p, err := c.objectProposal(hpa.Namespace, spec.Object, t, tol, sel)
		if err != nil {
			return proposalOf{}, failed("FailedGetObjectMetric", err, "failed to get object metric value: %w")
		}
		return p, nil
	case autoscalingv2.PodsMetricSourceType:
		sel, err := metav1.LabelSelectorAsSelector(spec.Pods.Metric.Selector)
		if err != nil {
			return proposalOf{}, failed("FailedGetPodsMetric", err, "failed to get pods metric value: %w")
		}
		p, err := c.podsProposal(hpa.Namespace, spec.Pods, t, tol, sel)
		if err != nil {
			return proposalOf{}, failed("FailedGetPodsMetric", err, "failed to get pods metric value: %w")
		}
		return p, nil
	case autoscalingv2.ResourceMetricSourceType:
		p, err := c.resourceProposal(ctx, hpa.Namespace, spec.Resource.Name, "", spec.Resource.Target, t, tol)
		if err != nil {
			return proposalOf{}, failed("FailedGetResourceMetric", err, "failed to get "+string(spec.Resource.Name)+" resource metric value: %w")
		}
		p.status = autoscalingv2.MetricStatus{Type: spec.Type, Resource: &autoscalingv2.ResourceMetricStatus{Name: spec.Resource.Name, Current: *p.status.Resource.Current.DeepCopy()}}
		return p, nil
	case autoscalingv2.ContainerResourceMetricSourceType:
		cr := spec.ContainerResource
		p, err := c.resourceProposal(ctx, hpa.Namespace, cr.Name, cr.Container, cr.Target, t, tol)
		if err != nil {
			return proposalOf{}, failed("FailedGetContainerResourceMetric", err, "failed to get "+cr.Container+" container metric value: %w")
		}
		p.status = autoscalingv2.MetricStatus{Type: spec.Type, ContainerResource: &autoscalingv2.ContainerResourceMetricStatus{
			Name: cr.Name, Container: cr.Container, Current: p.status.Resource.Current}}
		return p, nil
	case autoscalingv2.ExternalMetricSourceType:
		p, err := c.externalProposal(hpa.Namespace, spec.External, t, tol)
		if err != nil {
			return proposalOf{}, failed("FailedGetExternalMetric", err, "failed to get "+spec.External.Metric.Name+" external metric value: %w")
		}
		return p, nil
	}
	err := fmt.Errorf("unknown metric source type %q", string(spec.Type))
	return proposalOf{}, &metricError{reason: "InvalidMetricSourceType", err: err, outer: err}
}

func milli(v int64) *resource.Quantity { return resource.NewMilliQuantity(v, resource.DecimalSI) }

// resourceProposal serves Resource and ContainerResource metrics; the
// value status is returned in status.Resource.Current.
func (c *controller) resourceProposal(ctx context.Context, ns string, name corev1.ResourceName, container string,
	mt autoscalingv2.MetricTarget, t target, tol tolerances) (proposalOf, error) {
	format := resource.DecimalSI
	if name == corev1.ResourceMemory {
		format = resource.BinarySI
	}
	var p proposalOf
	var current autoscalingv2.MetricValueStatus
	switch {
	case mt.AverageValue != nil:
		replicas, raw, ts, err := c.calc.rawResourceReplicas(ctx, t.specReplicas, mt.AverageValue.MilliValue(), name, tol, ns, t.selector, container)
		if err != nil {
			return p, fmt.Errorf("failed to get %s usage: %w", name, err)
		}
		p = proposalOf{replicas: replicas, timestamp: ts, name: fmt.Sprintf("%s resource", name)}
		current.AverageValue = resource.NewMilliQuantity(raw, format)
	case mt.AverageUtilization != nil:
		r, err := c.calc.resourceUtilizationReplicas(ctx, t.specReplicas, *mt.AverageUtilization, name, tol, ns, t.selector, container)
		if err != nil {
			return p, fmt.Errorf("failed to get %s utilization: %w", name, err)
		}
		p = proposalOf{replicas: r.replicas, timestamp: r.timestamp, name: fmt.Sprintf("%s resource utilization (percentage of request)", name)}
		if container != "" {
			p.name = fmt.Sprintf("%s container resource utilization (percentage of request)", name)
		}
		percent := r.percent
		current.AverageUtilization, current.AverageValue = &percent, resource.NewMilliQuantity(r.raw, format)
	default:
		return p, errors.New("invalid resource metric source: neither an average utilization target nor an average value (usage) target was set")
	}
	p.status.Resource = &autoscalingv2.ResourceMetricStatus{Name: name, Current: current}
	return p, nil
}

func (c *controller) podsProposal(ns string, src *autoscalingv2.PodsMetricSource, t target, tol tolerances, sel labels.Selector) (proposalOf, error) {
	if src.Target.AverageValue == nil {
		return proposalOf{}, errors.New("invalid pods metric source: an average value target must be set")
	}
	replicas, usage, ts, err := c.calc.podsMetricReplicas(t.specReplicas, src.Target.AverageValue.MilliValue(), src.Metric.Name, tol, ns, t.selector, sel)
	if err != nil {
		return proposalOf{}, err
	}
	return proposalOf{replicas: replicas, timestamp: ts, name: "pods metric " + src.Metric.Name, status: autoscalingv2.MetricStatus{
		Type: autoscalingv2.PodsMetricSourceType,
		Pods: &autoscalingv2.PodsMetricStatus{Metric: src.Metric, Current: autoscalingv2.MetricValueStatus{AverageValue: milli(usage)}},
	}}, nil
}

func (c *controller) objectProposal(ns string, src *autoscalingv2.ObjectMetricSource, t target, tol tolerances, sel labels.Selector) (proposalOf, error) {
	status := autoscalingv2.MetricStatus{Type: autoscalingv2.ObjectMetricSourceType, Object: &autoscalingv2.ObjectMetricStatus{
		DescribedObject: src.DescribedObject, Metric: src.Metric}}
	switch {
	case src.Target.Type == autoscalingv2.ValueMetricType && src.Target.Value != nil:
		replicas, usage, ts, err := c.calc.objectReplicas(t.specReplicas, src.Target.Value.MilliValue(), src.Metric.Name, tol, ns, &src.DescribedObject, t.selector, sel)
		if err != nil {
			return proposalOf{}, err
		}
		status.Object.Current.Value = milli(usage)
		return proposalOf{replicas: replicas, timestamp: ts, status: status,
			name: fmt.Sprintf("%s metric %s", src.DescribedObject.Kind, src.Metric.Name)}, nil
	case src.Target.Type == autoscalingv2.AverageValueMetricType && src.Target.AverageValue != nil:
		replicas, usage, ts, err := c.calc.objectPerPodReplicas(t.statusReplicas, src.Target.AverageValue.MilliValue(), src.Metric.Name, tol, ns, &src.DescribedObject, sel)
		if err != nil {
			return proposalOf{}, fmt.Errorf("failed to get %s object metric: %w", src.Metric.Name, err)
		}
		status.Object.Current.AverageValue = milli(usage)
		// Upstream names an object metric's average this way too.
		return proposalOf{replicas: replicas, timestamp: ts, status: status,
			name: fmt.Sprintf("external metric %s(%+v)", src.Metric.Name, src.Metric.Selector)}, nil
	}
	return proposalOf{}, errors.New("invalid object metric source: neither a value target nor an average value target was set")
}

func (c *controller) externalProposal(ns string, src *autoscalingv2.ExternalMetricSource, t target, tol tolerances) (proposalOf, error) {
	status := autoscalingv2.MetricStatus{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricStatus{Metric: src.Metric}}
	name := fmt.Sprintf("external metric %s(%+v)", src.Metric.Name, src.Metric.Selector)
	switch {
	case src.Target.AverageValue != nil:
		replicas, usage, ts, err := c.calc.externalPerPodReplicas(t.statusReplicas, src.Target.AverageValue.MilliValue(), src.Metric.Name, tol, ns, src.Metric.Selector)
		if err != nil {
			return proposalOf{}, fmt.Errorf("failed to get %s external metric: %w", src.Metric.Name, err)
		}
		status.External.Current.AverageValue = milli(usage)
		return proposalOf{replicas: replicas, timestamp: ts, status: status, name: name}, nil
	case src.Target.Value != nil:
		replicas, usage, ts, err := c.calc.externalReplicas(t.specReplicas, src.Target.Value.MilliValue(), src.Metric.Name, tol, ns, src.Metric.Selector, t.selector)
		if err != nil {
			return proposalOf{}, fmt.Errorf("failed to get external metric %s: %w", src.Metric.Name, err)
		}
		status.External.Current.Value = milli(usage)
		return proposalOf{replicas: replicas, timestamp: ts, status: status, name: name}, nil
	}
	return proposalOf{}, errors.New("invalid external metric source: neither a value target nor an average value target was set")
}

// tolerancesFor is the configured tolerance, overridden per direction by
// the HPA's behavior (the HPAConfigurableTolerance feature, GA in 1.37).
func (c *controller) tolerancesFor(hpa *autoscalingv2.HorizontalPodAutoscaler) tolerances {
	t := tolerances{c.cfg.Tolerance, c.cfg.Tolerance}
	if b := hpa.Spec.Behavior; b != nil {
		if b.ScaleDown != nil && b.ScaleDown.Tolerance != nil {
			t.down = b.ScaleDown.Tolerance.AsApproximateFloat64()
		}
		if b.ScaleUp != nil && b.ScaleUp.Tolerance != nil {
			t.up = b.ScaleUp.Tolerance.AsApproximateFloat64()
		}
	}
	return t
}
