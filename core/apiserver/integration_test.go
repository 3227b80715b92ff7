package apiserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	clientfeatures "k8s.io/client-go/features"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-base/version"
	"k8s.io/utils/ptr"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// testNamespace creates a namespace of its own for t, so tests do not see each
// other's objects.
func testNamespace(t *testing.T) string {
	t.Helper()
	ctx := testCtx(t)
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := env.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	return name
}

func TestReadyReported(t *testing.T) {
	requireServer(t)
	if env.elapsed <= 0 {
		t.Errorf("ready reported elapsed %v, want > 0", env.elapsed)
	}
	logs := env.logs.String()
	if !strings.Contains(logs, `msg="apiserver ready"`) || !strings.Contains(logs, "elapsed=") {
		t.Error(`log lacks an "apiserver ready" line with the elapsed time`)
	}
	if !strings.Contains(logs, "component=kube-apiserver") {
		t.Error("kube-apiserver's klog output did not reach the slog logger")
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "apiserver ready") {
			t.Log(line)
		}
	}
	if path := os.Getenv("KEELSON_TEST_LOG"); path != "" {
		if err := os.WriteFile(path, []byte(logs), 0o600); err != nil {
			t.Error(err)
		}
	}
}

func TestDefaultNamespacesAndKubernetesService(t *testing.T) {
	requireServer(t)
	ctx := testCtx(t)
	for _, name := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := env.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
			return err == nil, nil
		})
		if err != nil {
			t.Errorf("namespace %s never appeared: %v", name, err)
		}
	}
	var svc *corev1.Service
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		svc, err = env.client.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("service default/kubernetes never appeared: %v", err)
	}
	if svc.Spec.ClusterIP != "10.43.0.1" {
		t.Errorf("kubernetes service ClusterIP = %s, want 10.43.0.1 (first address of %s)", svc.Spec.ClusterIP, DefaultServiceCIDR)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 443 {
		t.Errorf("kubernetes service ports = %+v, want 443", svc.Spec.Ports)
	}
}

func TestConfigMapCRUDAndSelectors(t *testing.T) {
	requireServer(t)
	ctx := testCtx(t)
	ns := testNamespace(t)
	cms := env.client.CoreV1().ConfigMaps(ns)
	for _, name := range []string{"alpha", "beta", "gamma"} {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"tier": map[bool]string{true: "web", false: "db"}[name != "gamma"]}},
			Data:       map[string]string{"k": name},
		}
		if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	got, err := cms.Get(ctx, "beta", metav1.GetOptions{})
	if err != nil || got.Data["k"] != "beta" || got.ResourceVersion == "" || got.UID == "" {
		t.Fatalf("get beta = %+v, %v", got, err)
	}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "beta"}}, metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Errorf("second create of beta: %v, want AlreadyExists", err)
	}
	stale := got.DeepCopy()
	got.Data["k"] = "beta2"
	if _, err := cms.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update beta: %v", err)
	}
	stale.Data["k"] = "lost update"
	if _, err := cms.Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("update with stale resourceVersion: %v, want Conflict", err)
	}
	tests := []struct {
		name string
		opts metav1.ListOptions
		want []string
	}{
		{"all", metav1.ListOptions{}, []string{"alpha", "beta", "gamma"}},
		{"label equality", metav1.ListOptions{LabelSelector: "tier=web"}, []string{"alpha", "beta"}},
		{"label set", metav1.ListOptions{LabelSelector: labels.Set{"tier": "db"}.String()}, []string{"gamma"}},
		{"label notin", metav1.ListOptions{LabelSelector: "tier notin (web)"}, []string{"gamma"}},
		{"field name", metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "alpha").String()}, []string{"alpha"}},
		{"field not name", metav1.ListOptions{FieldSelector: "metadata.name!=alpha"}, []string{"beta", "gamma"}},
		{"paged", metav1.ListOptions{Limit: 2}, []string{"alpha", "beta"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			list, err := cms.List(ctx, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, cm := range list.Items {
				names = append(names, cm.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.want, ",") {
				t.Errorf("list %+v = %v, want %v", tc.opts, names, tc.want)
			}
			if tc.opts.Limit > 0 && list.Continue == "" {
				t.Error("limited list has no continue token")
			}
		})
	}
	if err := cms.Delete(ctx, "alpha", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Get(ctx, "alpha", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get after delete: %v, want NotFound", err)
	}
}

func TestWatchListInitialEvents(t *testing.T) {
	requireServer(t)
	ctx := testCtx(t)
	ns := testNamespace(t)
	cms := env.client.CoreV1().ConfigMaps(ns)
	for _, name := range []string{"one", "two"} {
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{
		SendInitialEvents:    ptr.To(true),
		ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
		AllowWatchBookmarks:  true,
	})
	if err != nil {
		t.Fatalf("watch with sendInitialEvents: %v", err)
	}
	defer w.Stop()
	added := map[string]bool{}
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch closed before the initial-events bookmark")
			}
			switch ev.Type {
			case watch.Added:
				added[ev.Object.(*corev1.ConfigMap).Name] = true
			case watch.Bookmark:
				cm := ev.Object.(*corev1.ConfigMap)
				if cm.Annotations[metav1.InitialEventsAnnotationKey] != "true" {
					continue
				}
				if !added["one"] || !added["two"] || len(added) != 2 {
					t.Errorf("initial events before the bookmark = %v, want one and two", added)
				}
				if cm.ResourceVersion == "" {
					t.Error("initial-events bookmark has no resourceVersion")
				}
				return
			default:
				t.Fatalf("unexpected event %s before the initial-events bookmark: %+v", ev.Type, ev.Object)
			}
		case <-ctx.Done():
			t.Fatalf("no initial-events bookmark; saw %v", added)
		}
	}
}

func TestInformerSyncsAndSeesUpdate(t *testing.T) {
	requireServer(t)
	if !clientfeatures.FeatureGates().Enabled(clientfeatures.WatchListClient) {
		t.Fatal("client-go WatchListClient is off; this test is meant to exercise informers in WatchList mode")
	}
	ctx := testCtx(t)
	ns := testNamespace(t)
	cms := env.client.CoreV1().ConfigMaps(ns)
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "watched"}, Data: map[string]string{"v": "1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(env.client, 0, informers.WithNamespace(ns))
	inf := factory.Core().V1().ConfigMaps()
	updates := make(chan string, 10)
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) { updates <- obj.(*corev1.ConfigMap).Data["v"] },
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer func() { close(stop); factory.Shutdown() }()
	factory.Start(stop)
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("informer for %v did not sync", typ)
		}
	}
	cached, err := inf.Lister().ConfigMaps(ns).Get("watched")
	if err != nil || cached.Data["v"] != "1" {
		t.Fatalf("lister after sync: %+v, %v", cached, err)
	}
	cm := cached.DeepCopy()
	cm.Data["v"] = "2"
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case v := <-updates:
			if v == "2" {
				return
			}
		case <-ctx.Done():
			t.Fatal("informer never saw the update")
		}
	}
}

func TestServiceValidation(t *testing.T) {
	requireServer(t)
	ctx := testCtx(t)
	ns := testNamespace(t)
	svc := func(name, clusterIP string) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{
				ClusterIP: clusterIP,
				Selector:  map[string]string{"app": name},
				Ports:     []corev1.ServicePort{{Port: 80}},
			},
		}
	}
	created, err := env.client.CoreV1().Services(ns).Create(ctx, svc("web", ""), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service: %v", err)
	}
	_, serviceNet, _ := net.ParseCIDR(DefaultServiceCIDR)
	if ip := net.ParseIP(created.Spec.ClusterIP); ip == nil || !serviceNet.Contains(ip) {
		t.Errorf("allocated ClusterIP %q not in %s", created.Spec.ClusterIP, DefaultServiceCIDR)
	}
	if created.Spec.Ports[0].TargetPort.IntValue() != 80 || created.Spec.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("service port not defaulted: %+v", created.Spec.Ports[0])
	}
	tests := []struct {
		name string
		obj  *corev1.Service
	}{
		{"malformed clusterIP", svc("bad-ip", "999.1.1.1")},
		{"clusterIP outside the service range", svc("outside", "192.168.77.7")},
		{"clusterIP already allocated", svc("dup", created.Spec.ClusterIP)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := env.client.CoreV1().Services(ns).Create(ctx, tc.obj, metav1.CreateOptions{})
			if !apierrors.IsInvalid(err) {
				t.Fatalf("create: %v, want 422 Invalid", err)
			}
			var status apierrors.APIStatus
			if errors.As(err, &status) && status.Status().Code != http.StatusUnprocessableEntity {
				t.Errorf("code %d, want 422", status.Status().Code)
			}
		})
	}
}

func TestNameTooLongRefused(t *testing.T) {
	requireServer(t)
	ctx := testCtx(t)
	ns := testNamespace(t)
	name := strings.Repeat("a", 254)
	_, err := env.client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("create ConfigMap with a 254-character name: %v, want 422 Invalid", err)
	}
	ok := strings.Repeat("a", 253)
	if _, err := env.client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ok}}, metav1.CreateOptions{}); err != nil {
		t.Errorf("create ConfigMap with a 253-character name: %v", err)
	}
}

func TestServerSideApply(t *testing.T) {
	requireServer(t)
	ctx := testCtx(t)
	ns := testNamespace(t)
	cms := env.client.CoreV1().ConfigMaps(ns)
	apply := func(manager string, data map[string]string, force bool) error {
		_, err := cms.Apply(ctx, corev1ac.ConfigMap("applied", ns).WithData(data), metav1.ApplyOptions{FieldManager: manager, Force: force})
		return err
	}
	if err := apply("alice", map[string]string{"a": "1"}, false); err != nil {
		t.Fatalf("first apply: %v", err)
	}
	if err := apply("bob", map[string]string{"a": "2"}, false); !apierrors.IsConflict(err) {
		t.Errorf("conflicting apply by another manager: %v, want Conflict", err)
	}
	if err := apply("bob", map[string]string{"a": "2", "b": "x"}, true); err != nil {
		t.Fatalf("forced apply: %v", err)
	}
	got, err := cms.Get(ctx, "applied", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Data["a"] != "2" || got.Data["b"] != "x" {
		t.Errorf("data after forced apply = %v", got.Data)
	}
	managers := map[string]bool{}
	for _, mf := range got.ManagedFields {
		managers[mf.Manager] = mf.Operation == metav1.ManagedFieldsOperationApply
	}
	if !managers["bob"] {
		t.Errorf("managedFields = %+v, want bob as an Apply manager", got.ManagedFields)
	}
}

func TestDiscoveryOpenAPIAndTables(t *testing.T) {
	requireServer(t)
	ctx := testCtx(t)
	groups, err := env.client.Discovery().ServerGroups()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, g := range groups.Groups {
		have[g.Name] = true
	}
	for _, g := range []string{"", "apps", "batch", "rbac.authorization.k8s.io", "coordination.k8s.io", "apiextensions.k8s.io", "apiregistration.k8s.io"} {
		if !have[g] {
			t.Errorf("discovery lacks group %q", g)
		}
	}
	tests := []struct {
		path, accept, want string
	}{
		{"/openapi/v2", "application/json", `"swagger"`},
		{"/openapi/v3", "application/json", `"paths"`},
		{"/openapi/v3/api/v1", "application/json", `"openapi"`},
		{"/api/v1/namespaces", "application/json;as=Table;v=v1;g=meta.k8s.io", `"kind":"Table"`},
		{"/apis", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", `"APIGroupDiscoveryList"`},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			body, err := env.client.CoreV1().RESTClient().Get().AbsPath(tc.path).SetHeader("Accept", tc.accept).DoRaw(ctx)
			if err != nil {
				t.Fatalf("GET %s: %v", tc.path, err)
			}
			if !strings.Contains(string(body), tc.want) {
				t.Errorf("GET %s: body lacks %s (first 200 bytes: %.200s)", tc.path, tc.want, body)
			}
		})
	}
}

func TestVersionReported(t *testing.T) {
	requireServer(t)
	info, err := env.client.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	want := version.Get()
	if info.GitVersion != want.GitVersion {
		t.Errorf("server reports %s, this binary was built as %s", info.GitVersion, want.GitVersion)
	}
	// A stamped build (see VERSION_LDFLAGS.md) must report the embedded release.
	if want.Major != "" && (info.Major != "1" || info.Minor != "37") {
		t.Errorf("server reports version %s.%s, want 1.37", info.Major, info.Minor)
	}
	t.Logf("server version %s (major %q minor %q)", info.GitVersion, info.Major, info.Minor)
}

func TestAnonymousRefused(t *testing.T) {
	requireServer(t)
	ctx := testCtx(t)
	caPEM, err := os.ReadFile(env.cfg.Bundle.CA.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer client.CloseIdleConnections()
	for _, path := range []string{"/api/v1/namespaces", "/readyz", "/version", "/openapi/v2"} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, env.rest.Host+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous GET %s = %d, want 401", path, resp.StatusCode)
		}
		var status metav1.Status
		if json.Unmarshal(body, &status) == nil && status.Kind == "Status" && status.Reason != metav1.StatusReasonUnauthorized {
			t.Errorf("anonymous GET %s reason %q, want Unauthorized", path, status.Reason)
		}
	}
}

func TestRunTwiceRefused(t *testing.T) {
	requireServer(t)
	err := Run(testCtx(t), env.cfg, nil)
	if !errors.Is(err, ErrAlreadyRan) {
		t.Fatalf("second Run = %v, want ErrAlreadyRan", err)
	}
}
