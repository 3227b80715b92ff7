package metricsserver

import (
	"context"
	"fmt"
	"net"
	"reflect"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	"k8s.io/utils/ptr"
)

// The objects that make kube-apiserver's aggregator send metrics.k8s.io
// to this plugin: a Service without selector whose one endpoint is the
// leader's address (kept by this plugin, as kube-apiserver keeps the
// `kubernetes` Service's), and the APIService naming it with this run's
// CA. metrics-server's names, so tools that look for them find them.
const (
	namespace      = "kube-system"
	serviceName    = "metrics-server"
	sliceName      = "metrics-server-leader"
	apiServiceName = version + "." + group
	portName       = "https"
	servicePort    = 443
	managedBy      = "metricsserver.keelson.io"
	readerRoleName = "system:aggregated-metrics-reader"
)

// registration is what to publish.
type registration struct {
	advertise net.IP
	port      int32
	caBundle  []byte
}

type registrar struct {
	client kubernetes.Interface
	agg    aggregator.Interface
	reg    registration
}

// ensure brings every published object to what it should be, creating or
// updating each; a no-op when they already are.
func (r *registrar) ensure(ctx context.Context) error {
	for _, step := range []struct {
		what string
		do   func(context.Context) error
	}{
		{"the reader ClusterRole", r.ensureReaderRole},
		{"Service " + namespace + "/" + serviceName, r.ensureService},
		{"EndpointSlice " + namespace + "/" + sliceName, r.ensureSlice},
		{"APIService " + apiServiceName, r.ensureAPIService},
	} {
		if err := step.do(ctx); err != nil {
			return fmt.Errorf("publishing %s: %w", step.what, err)
		}
	}
	return nil
}

// ReaderRole is the ClusterRole upstream ships with metrics-server: read
// access to the metrics API, aggregated into view, edit and admin.
func ReaderRole() *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: readerRoleName, Labels: map[string]string{
			"rbac.authorization.k8s.io/aggregate-to-view":  "true",
			"rbac.authorization.k8s.io/aggregate-to-edit":  "true",
			"rbac.authorization.k8s.io/aggregate-to-admin": "true",
			"app.kubernetes.io/managed-by":                 managedBy,
		}},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{group}, Resources: []string{"pods", "nodes"}, Verbs: []string{"get", "list", "watch"}}},
	}
}

func (r *registrar) ensureReaderRole(ctx context.Context) error {
	want := ReaderRole()
	roles := r.client.RbacV1().ClusterRoles()
	cur, err := roles.Get(ctx, want.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = roles.Create(ctx, want, metav1.CreateOptions{})
		return ignoreExists(err)
	}
	if err != nil || (reflect.DeepEqual(cur.Rules, want.Rules) && hasLabels(cur.Labels, want.Labels)) {
		return err
	}
	cur.Rules = want.Rules
	cur.Labels = merged(cur.Labels, want.Labels)
	_, err = roles.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

func (r *registrar) ensureService(ctx context.Context) error {
	svcs := r.client.CoreV1().Services(namespace)
	want := []v1.ServicePort{{Name: portName, Port: servicePort, Protocol: v1.ProtocolTCP, TargetPort: intstr.FromInt32(r.reg.port)}}
	cur, err := svcs.Get(ctx, serviceName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = svcs.Create(ctx, &v1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: serviceName, Namespace: namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": managedBy}},
			Spec:       v1.ServiceSpec{Type: v1.ServiceTypeClusterIP, Ports: want},
		}, metav1.CreateOptions{})
		return ignoreExists(err)
	}
	if err != nil {
		return err
	}
	if len(cur.Spec.Selector) > 0 {
		return fmt.Errorf("it selects pods (%v): the metrics API is served by the metricsserver plugin; delete the Service or disable the plugin", cur.Spec.Selector)
	}
	if len(cur.Spec.Ports) == 1 && cur.Spec.Ports[0].Name == portName && cur.Spec.Ports[0].Port == servicePort && cur.Spec.Ports[0].TargetPort == want[0].TargetPort {
		return nil
	}
	cur.Spec.Ports = want
	_, err = svcs.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

func (r *registrar) wantSlice() *discoveryv1.EndpointSlice {
	family := discoveryv1.AddressTypeIPv4
	if r.reg.advertise.To4() == nil {
		family = discoveryv1.AddressTypeIPv6
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: sliceName, Namespace: namespace, Labels: map[string]string{
			discoveryv1.LabelServiceName: serviceName, discoveryv1.LabelManagedBy: managedBy}},
		AddressType: family,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{r.reg.advertise.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To(portName), Port: ptr.To(r.reg.port), Protocol: ptr.To(v1.ProtocolTCP)}},
	}
}

func (r *registrar) ensureSlice(ctx context.Context) error {
	want := r.wantSlice()
	slices := r.client.DiscoveryV1().EndpointSlices(namespace)
	cur, err := slices.Get(ctx, sliceName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = slices.Create(ctx, want, metav1.CreateOptions{})
		return ignoreExists(err)
	}
	if err != nil {
		return err
	}
	if cur.AddressType != want.AddressType {
		// The address type cannot change: replace the slice.
		if err := slices.Delete(ctx, sliceName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		_, err = slices.Create(ctx, want, metav1.CreateOptions{})
		return err
	}
	if reflect.DeepEqual(cur.Endpoints, want.Endpoints) && reflect.DeepEqual(cur.Ports, want.Ports) && hasLabels(cur.Labels, want.Labels) {
		return nil
	}
	cur.Endpoints, cur.Ports, cur.Labels = want.Endpoints, want.Ports, merged(cur.Labels, want.Labels)
	_, err = slices.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

func (r *registrar) ensureAPIService(ctx context.Context) error {
	spec := apiregv1.APIServiceSpec{
		Service:              &apiregv1.ServiceReference{Namespace: namespace, Name: serviceName, Port: ptr.To[int32](servicePort)},
		Group:                group,
		Version:              version,
		CABundle:             r.reg.caBundle,
		GroupPriorityMinimum: 100,
		VersionPriority:      100,
	}
	apis := r.agg.ApiregistrationV1().APIServices()
	cur, err := apis.Get(ctx, apiServiceName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = apis.Create(ctx, &apiregv1.APIService{
			ObjectMeta: metav1.ObjectMeta{Name: apiServiceName, Labels: map[string]string{"app.kubernetes.io/managed-by": managedBy}},
			Spec:       spec,
		}, metav1.CreateOptions{})
		return ignoreExists(err)
	}
	if err != nil || reflect.DeepEqual(cur.Spec, spec) {
		return err
	}
	cur.Spec = spec
	_, err = apis.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

// ignoreExists takes a create that lost a race as done: the next ensure
// compares what won.
func ignoreExists(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func merged(have, want map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range have {
		out[k] = v
	}
	for k, v := range want {
		out[k] = v
	}
	return out
}
