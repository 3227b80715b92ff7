package ingress

import (
	"context"
	"log/slog"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/plugins/sdk"
)

// waitFor polls cond until it holds: the fake clientset's watches reach
// the informers asynchronously. The timeout is a hang guard only.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func TestLeaderKeepsItsObjectsAndTheStatus(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	web := ing("web", 0, rule("a.com", path{"/", prefix, "web"}))
	web = withTLS(web, "cert", "a.com")
	other := ing("other", 0, rule("b.com", path{"/", prefix, "web"}))
	other.Spec.IngressClassName = ptr.To("nginx")
	client := fake.NewClientset(node("n1", "10.0.0.1", true, nil), tlsSecret(t, "cert", "a.com"), tlsSecret(t, "unused", "x.com"), web, other)
	f := informers.NewSharedInformerFactory(client, 0)
	l := &leader{client: client, cfg: DefaultConfig(), log: slog.New(slog.DiscardHandler), queue: sdk.NewQueue[string]("test"),
		ings: f.Networking().V1().Ingresses().Lister(), classes: f.Networking().V1().IngressClasses().Lister(),
		nodes: f.Core().V1().Nodes().Lister(), secrets: f.Core().V1().Secrets().Lister(), services: f.Core().V1().Services().Lister()}
	f.Start(ctx.Done())
	// Shutdown waits for the informers, which stop with ctx.
	defer func() { cancel(); f.Shutdown() }()
	f.WaitForCacheSync(ctx.Done())
	if _, err := l.sync(ctx, infraKey); err != nil {
		t.Fatal(err)
	}
	class, err := client.NetworkingV1().IngressClasses().Get(ctx, ClassName, metav1.GetOptions{})
	if err != nil || class.Annotations[annotationDefaultClass] != "true" || class.Spec.Controller != ControllerName {
		t.Fatalf("class %v, %v: want %s of %s, marked default", class, err, ClassName, ControllerName)
	}
	svc, err := client.CoreV1().Services(Namespace).Get(ctx, ServiceName, metav1.GetOptions{})
	if err != nil || svc.Spec.Type != v1.ServiceTypeLoadBalancer || svc.Spec.ExternalTrafficPolicy != v1.ServiceExternalTrafficPolicyLocal {
		t.Fatalf("service %v, %v: want a LoadBalancer with externalTrafficPolicy Local", svc, err)
	}
	slice, err := client.DiscoveryV1().EndpointSlices(Namespace).Get(ctx, ServiceName, metav1.GetOptions{})
	if err != nil || len(slice.Endpoints) != 1 || slice.Endpoints[0].Addresses[0] != "10.0.0.1" {
		t.Fatalf("slice %v, %v: want node n1's address", slice, err)
	}
	// The new class's event brings the next pass, in which web (no class)
	// is ours through the default class.
	waitFor(t, "the class in the cache", func() bool { _, err := l.classes.Get(ClassName); return err == nil })
	if _, err := l.sync(ctx, infraKey); err != nil {
		t.Fatal(err)
	}
	bundle, err := client.CoreV1().Secrets(Namespace).Get(ctx, BundleName, metav1.GetOptions{})
	if err != nil || len(bundle.Data) != 2 || bundle.Data["default_cert.tls.key"] == nil {
		t.Fatalf("bundle %v, %v: want the referenced pair only", keys(bundle.Data), err)
	}

	// The user unmarks the class: the plugin leaves it so.
	class.Annotations = nil
	if _, err := client.NetworkingV1().IngressClasses().Update(ctx, class, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the unmarked class in the cache", func() bool {
		c, err := l.classes.Get(ClassName)
		return err == nil && c.Annotations == nil
	})
	if _, err := l.sync(ctx, infraKey); err != nil {
		t.Fatal(err)
	}
	if c, _ := client.NetworkingV1().IngressClasses().Get(ctx, ClassName, metav1.GetOptions{}); c.Annotations[annotationDefaultClass] != "" {
		t.Error("the plugin marked the class default again after the user unmarked it")
	}

	// The cloud provider gives the Service an address: the Ingresses of
	// ours get it (web by its class, set explicitly now that none is
	// default), the other class's do not.
	svc.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "192.0.2.10"}}
	if _, err := client.CoreV1().Services(Namespace).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	web.Spec.IngressClassName = &class.Name
	if _, err := client.NetworkingV1().Ingresses("default").Update(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the address and the class in the caches", func() bool {
		s, err := l.services.Services(Namespace).Get(ServiceName)
		i, err2 := l.ings.Ingresses("default").Get("web")
		return err == nil && err2 == nil && len(s.Status.LoadBalancer.Ingress) == 1 && i.Spec.IngressClassName != nil
	})
	for _, key := range []string{"default/web", "default/other"} {
		if err := l.syncStatus(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := client.NetworkingV1().Ingresses("default").Get(ctx, "web", metav1.GetOptions{})
	if lb := got.Status.LoadBalancer.Ingress; len(lb) != 1 || lb[0].IP != "192.0.2.10" {
		t.Errorf("web's status %v, want 192.0.2.10", lb)
	}
	got, _ = client.NetworkingV1().Ingresses("default").Get(ctx, "other", metav1.GetOptions{})
	if lb := got.Status.LoadBalancer.Ingress; len(lb) != 0 {
		t.Errorf("the nginx-class Ingress got status %v; want it left alone", lb)
	}
}
