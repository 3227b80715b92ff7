package metricsserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// fakeSource serves fixed objects and usage.
type fakeSource struct {
	nodes []*v1.Node
	pods  []*v1.Pod
	store *store
}

func (f *fakeSource) listNodes(sel labels.Selector) ([]metav1.Object, error) {
	var out []metav1.Object
	for _, n := range f.nodes {
		if sel.Matches(labels.Set(n.Labels)) {
			out = append(out, n)
		}
	}
	return out, nil
}

func (f *fakeSource) getNode(name string) (metav1.Object, error) {
	for _, n := range f.nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return nil, errNotFound
}

func (f *fakeSource) listPods(ns string, sel labels.Selector) ([]metav1.Object, error) {
	var out []metav1.Object
	for _, p := range f.pods {
		if (ns == "" || p.Namespace == ns) && sel.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	return out, nil
}

func (f *fakeSource) getPod(ns, name string) (metav1.Object, error) {
	for _, p := range f.pods {
		if p.Namespace == ns && p.Name == name {
			return p, nil
		}
	}
	return nil, errNotFound
}

func (f *fakeSource) nodeUsage(name string) (usage, bool) { return f.store.node(name) }
func (f *fakeSource) podUsage(ns, name string) (usage, []containerUsage, bool) {
	return f.store.pod(podRef{ns, name})
}
func (f *fakeSource) now() time.Time { return at(100) }

// measured is a store with two reads of node n1 and pods default/web
// (container app) and other/db; default/idle was never read.
func measured() *fakeSource {
	s := newStore(15 * time.Second)
	for i, ts := range []time.Time{at(0), at(15)} {
		b := newBatch()
		b.nodes["n1"] = point{ts: ts, cpuNanos: uint64(i) * 15e9 / 2, workingSet: 1 << 30}
		b.pods[podRef{"default", "web"}] = map[string]containerPoint{"app": {point: point{ts: ts, cpuNanos: uint64(i) * 3e9, workingSet: 64 << 20}, start: at(-100)}}
		b.pods[podRef{"other", "db"}] = map[string]containerPoint{"db": {point: point{ts: ts, cpuNanos: uint64(i) * 15e8, workingSet: 1 << 20}, start: at(-100)}}
		s.update(b)
	}
	pod := func(ns, name, app string) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": app}}}
	}
	return &fakeSource{store: s,
		nodes: []*v1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"zone": "a"}}}, {ObjectMeta: metav1.ObjectMeta{Name: "n2"}}},
		pods:  []*v1.Pod{pod("default", "web", "web"), pod("default", "idle", "web"), pod("other", "db", "db")}}
}

// testCA is a request-header CA with a front-proxy client certificate.
type testCA struct {
	caPEM  string
	client *x509.Certificate
	other  *x509.Certificate // of the CA, with a name not allowed
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "front-proxy-ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	issue := func(cn string, serial int64) *x509.Certificate {
		ck, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ct := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		d, err := x509.CreateCertificate(rand.Reader, ct, ca, &ck.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(d)
		return c
	}
	return testCA{caPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		client: issue("front-proxy-client", 2), other: issue("someone", 3)}
}

func (c testCA) configMap() *v1.ConfigMap {
	return &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: authConfigMapNamespace, Name: authConfigMapName}, Data: map[string]string{
		"requestheader-client-ca-file":       c.caPEM,
		"requestheader-allowed-names":        `["front-proxy-client"]`,
		"requestheader-username-headers":     `["X-Remote-User"]`,
		"requestheader-group-headers":        `["X-Remote-Group"]`,
		"requestheader-extra-headers-prefix": `["X-Remote-Extra-"]`,
		"requestheader-uid-headers":          `["X-Remote-Uid"]`,
	}}
}

// fixture is the API with a fake API server whose access reviews allow
// user "admin" everything and user "dev" pods in namespace default.
type fixture struct {
	t       *testing.T
	ca      testCA
	handler http.Handler
	reviews []authzv1.ResourceAttributes
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, ca: newTestCA(t)}
	client := fake.NewClientset()
	client.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sar := a.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview).DeepCopy()
		ra := *sar.Spec.ResourceAttributes
		f.reviews = append(f.reviews, ra)
		sar.Status.Allowed = sar.Spec.User == "admin" || (sar.Spec.User == "dev" && ra.Resource == "pods" && ra.Namespace == "default")
		return true, sar, nil
	})
	proxy := &frontProxy{}
	if err := proxy.set(f.ca.configMap()); err != nil {
		t.Fatal(err)
	}
	f.handler = newAPI(proxy, client, measured()).handler()
	return f
}

func (f *fixture) get(path, user, accept string, cert *x509.Certificate) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "https://metrics"+path, nil)
	if cert != nil {
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
	}
	if user != "" {
		r.Header.Set("X-Remote-User", user)
		r.Header.Add("X-Remote-Group", "system:authenticated")
	}
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, r)
	return w
}

const base = "/apis/metrics.k8s.io/v1beta1"

func TestFrontProxyAuthentication(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		user string
		want int
	}{
		{"front proxy", f.ca.client, "admin", http.StatusOK},
		{"no certificate", nil, "admin", http.StatusUnauthorized},
		{"a name not allowed", f.ca.other, "admin", http.StatusUnauthorized},
		{"no user header", f.ca.client, "", http.StatusUnauthorized},
		{"a certificate of another CA", newTestCA(t).client, "admin", http.StatusUnauthorized},
	} {
		if w := f.get(base+"/nodes", tc.user, "", tc.cert); w.Code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, w.Code, w.Body, tc.want)
		}
	}
	if w := f.get("/healthz", "", "", nil); w.Code != http.StatusOK {
		t.Errorf("/healthz: %d", w.Code)
	}
}

func TestDiscovery(t *testing.T) {
	f := newFixture(t)
	w := f.get(base, "someone", "", f.ca.client)
	var rl metav1.APIResourceList
	if err := json.Unmarshal(w.Body.Bytes(), &rl); err != nil || rl.GroupVersion != "metrics.k8s.io/v1beta1" || len(rl.APIResources) != 2 {
		t.Fatalf("discovery %d %s (%v)", w.Code, w.Body, err)
	}
	if rl.APIResources[0].Kind != "NodeMetrics" || rl.APIResources[0].Namespaced || rl.APIResources[1].Kind != "PodMetrics" || !rl.APIResources[1].Namespaced {
		t.Errorf("resources %+v", rl.APIResources)
	}
	if w := f.get("/openapi/v2", "system:kube-aggregator", "application/json", f.ca.client); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"swagger":"2.0"`) {
		t.Errorf("/openapi/v2: %d %s", w.Code, w.Body)
	}
	// The aggregator asks /apis for aggregated discovery first; a legacy
	// answer makes it fall back to the group-version document.
	if w := f.get("/apis", "system:kube-aggregator", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", f.ca.client); w.Code != http.StatusOK || strings.Contains(w.Header().Get("Content-Type"), "apidiscovery") {
		t.Errorf("/apis: %d %s", w.Code, w.Header())
	}
}

func TestNodeMetrics(t *testing.T) {
	f := newFixture(t)
	var list metricsv1beta1.NodeMetricsList
	decode(t, f.get(base+"/nodes", "admin", "", f.ca.client), &list)
	if list.Kind != "NodeMetricsList" || len(list.Items) != 1 {
		t.Fatalf("list %+v: want n1 only (n2 was never read)", list)
	}
	n := list.Items[0]
	if n.Name != "n1" || n.Labels["zone"] != "a" || n.Usage.Cpu().String() != "500m" || n.Usage.Memory().String() != "1Gi" ||
		n.Window.Duration != 15*time.Second || !n.Timestamp.Time.Equal(at(15)) {
		t.Errorf("node metrics %+v", n)
	}
	decode(t, f.get(base+"/nodes?labelSelector=zone%3Db", "admin", "", f.ca.client), &list)
	if len(list.Items) != 0 {
		t.Errorf("labelSelector zone=b: %+v", list.Items)
	}
	if w := f.get(base+"/nodes/n2", "admin", "", f.ca.client); w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), `nodes.metrics.k8s.io \"n2\" not found`) {
		t.Errorf("a node without metrics: %d %s", w.Code, w.Body)
	}
}

func TestPodMetrics(t *testing.T) {
	f := newFixture(t)
	var list metricsv1beta1.PodMetricsList
	decode(t, f.get(base+"/pods", "admin", "", f.ca.client), &list)
	if len(list.Items) != 2 {
		t.Fatalf("all namespaces: %+v, want web and db (idle was never read)", list.Items)
	}
	decode(t, f.get(base+"/namespaces/default/pods?labelSelector=app%3Dweb", "admin", "", f.ca.client), &list)
	if len(list.Items) != 1 || list.Items[0].Name != "web" || list.Items[0].Labels["app"] != "web" {
		t.Fatalf("default, app=web: %+v", list.Items)
	}
	c := list.Items[0].Containers
	if len(c) != 1 || c[0].Name != "app" || c[0].Usage.Cpu().String() != "200m" || c[0].Usage.Memory().String() != "64Mi" {
		t.Errorf("containers %+v", c)
	}
	decode(t, f.get(base+"/pods?fieldSelector=metadata.namespace%3Dother", "admin", "", f.ca.client), &list)
	if len(list.Items) != 1 || list.Items[0].Name != "db" {
		t.Errorf("fieldSelector metadata.namespace=other: %+v", list.Items)
	}
	if w := f.get(base+"/pods?fieldSelector=spec.nodeName%3Dn1", "admin", "", f.ca.client); w.Code != http.StatusBadRequest {
		t.Errorf("an unsupported field selector: %d %s", w.Code, w.Body)
	}
	if w := f.get(base+"/pods?watch=true", "admin", "", f.ca.client); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("a watch: %d %s", w.Code, w.Body)
	}
	var pm metricsv1beta1.PodMetrics
	decode(t, f.get(base+"/namespaces/other/pods/db", "admin", "", f.ca.client), &pm)
	if pm.Name != "db" || pm.Namespace != "other" || pm.Containers[0].Usage.Cpu().String() != "100m" {
		t.Errorf("get other/db: %+v", pm)
	}
}

func TestAuthorization(t *testing.T) {
	f := newFixture(t)
	if w := f.get(base+"/namespaces/default/pods", "dev", "", f.ca.client); w.Code != http.StatusOK {
		t.Errorf("dev lists pods in default: %d %s", w.Code, w.Body)
	}
	w := f.get(base+"/nodes", "dev", "", f.ca.client)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), `User \"dev\" cannot list resource \"nodes\" in API group \"metrics.k8s.io\" at the cluster scope`) {
		t.Errorf("dev lists nodes: %d %s", w.Code, w.Body)
	}
	if w := f.get(base+"/pods", "dev", "", f.ca.client); w.Code != http.StatusForbidden {
		t.Errorf("dev lists pods in all namespaces: %d %s", w.Code, w.Body)
	}
	last := f.reviews[len(f.reviews)-1]
	if last.Group != "metrics.k8s.io" || last.Resource != "pods" || last.Verb != "list" || last.Namespace != "" {
		t.Errorf("access review %+v", last)
	}
	n := len(f.reviews)
	f.get(base+"/nodes", "dev", "", f.ca.client)
	if len(f.reviews) != n {
		t.Error("a repeated request was reviewed again within the cache's lifetime")
	}
}

func TestProtobuf(t *testing.T) {
	f := newFixture(t)
	w := f.get(base+"/nodes/n1", "admin", "application/vnd.kubernetes.protobuf, application/json", f.ca.client)
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/vnd.kubernetes.protobuf" {
		t.Fatalf("%d %s", w.Code, w.Header())
	}
	a := newAPI(&frontProxy{}, nil, nil)
	obj, _, err := a.codecs.UniversalDeserializer().Decode(w.Body.Bytes(), nil, nil)
	if n, ok := obj.(*metricsv1beta1.NodeMetrics); err != nil || !ok || n.Name != "n1" || n.Usage.Cpu().String() != "500m" {
		t.Errorf("decoded %#v %v", obj, err)
	}
	if w := f.get(base+"/nodes/n1", "admin", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json", f.ca.client); w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("a Table request is answered as %s, want plain JSON", w.Header().Get("Content-Type"))
	}
}

func decode(t *testing.T, w *httptest.ResponseRecorder, into any) {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), into); err != nil {
		t.Fatalf("decoding %s: %v", w.Body, err)
	}
}
