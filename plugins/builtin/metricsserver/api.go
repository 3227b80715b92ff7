package metricsserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/client-go/kubernetes"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// The API group and version served.
const (
	group   = "metrics.k8s.io"
	version = "v1beta1"
)

var groupVersion = schema.GroupVersion{Group: group, Version: version}

// accessTTL is how long an access review's answer is reused, the
// delegating authorizer's default in aggregated API servers.
const accessTTL = 10 * time.Second

// api serves metrics.k8s.io/v1beta1 to kube-apiserver's aggregator.
type api struct {
	proxy   *frontProxy
	client  kubernetes.Interface
	answers *cache.LRUExpireCache
	source  metricsSource
	codecs  serializer.CodecFactory
}

func newAPI(proxy *frontProxy, client kubernetes.Interface, source metricsSource) *api {
	scheme := runtime.NewScheme()
	// Registering a generated API group into a fresh scheme fails only
	// on a programming error.
	if err := metricsv1beta1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	metav1.AddToGroupVersion(scheme, groupVersion)
	return &api{proxy: proxy, client: client, source: source, codecs: serializer.NewCodecFactory(scheme),
		answers: cache.NewLRUExpireCache(4096)}
}

// handler routes the API's paths; health checks need no authentication.
func (a *api) handler() http.Handler {
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }
	for _, p := range []string{"/healthz", "/livez", "/readyz"} {
		mux.HandleFunc("GET "+p, ok)
	}
	authed := http.NewServeMux()
	authed.HandleFunc("GET /apis", a.groupList)
	authed.HandleFunc("GET /openapi/v2", openAPI)
	authed.HandleFunc("GET /apis/"+group, a.group)
	authed.HandleFunc("GET /apis/"+group+"/"+version, a.resources)
	base := "/apis/" + group + "/" + version
	authed.HandleFunc("GET "+base+"/nodes", a.listNodes)
	authed.HandleFunc("GET "+base+"/nodes/{name}", a.getNode)
	authed.HandleFunc("GET "+base+"/pods", a.listPods)
	authed.HandleFunc("GET "+base+"/namespaces/{namespace}/pods", a.listPods)
	authed.HandleFunc("GET "+base+"/namespaces/{namespace}/pods/{name}", a.getPod)
	mux.Handle("/", a.authenticated(authed))
	return mux
}

type userKey struct{}

// authenticated admits requests of the front proxy only.
func (a *api) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := a.proxy.authenticate(r)
		if err != nil {
			writeStatus(w, apierrors.NewUnauthorized(err.Error()))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, u)))
	})
}

type access struct {
	allowed bool
	reason  string
}

// authorize asks the API server whether the request's user may verb the
// resource (a SubjectAccessReview, as delegated authorization does), so
// RBAC on nodes.metrics.k8s.io and pods.metrics.k8s.io decides.
func (a *api) authorize(r *http.Request, verb, resource, namespace, name string) error {
	u, _ := r.Context().Value(userKey{}).(proxyUser)
	attrs := authzv1.ResourceAttributes{Group: group, Version: version, Resource: resource, Verb: verb, Namespace: namespace, Name: name}
	key := u.name + "\x00" + strings.Join(u.groups, ",") + "\x00" + attrs.String()
	if c, ok := a.answers.Get(key); ok {
		return denied(c.(access), u, attrs)
	}
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: u.name, UID: u.uid, Groups: u.groups, Extra: u.extra, ResourceAttributes: &attrs}}
	resp, err := a.client.AuthorizationV1().SubjectAccessReviews().Create(r.Context(), sar, metav1.CreateOptions{})
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	ans := access{allowed: resp.Status.Allowed, reason: resp.Status.Reason}
	a.answers.Add(key, ans, accessTTL)
	return denied(ans, u, attrs)
}

// denied is the Forbidden error kube-apiserver would give, or nil.
func denied(ans access, u proxyUser, attrs authzv1.ResourceAttributes) error {
	if ans.allowed {
		return nil
	}
	scope := "at the cluster scope"
	if attrs.Namespace != "" {
		scope = "in the namespace \"" + attrs.Namespace + "\""
	}
	msg := fmt.Sprintf("User %q cannot %s resource %q in API group %q %s", u.name, attrs.Verb, attrs.Resource, group, scope)
	if ans.reason != "" {
		msg += ": " + ans.reason
	}
	return apierrors.NewForbidden(schema.GroupResource{Group: group, Resource: attrs.Resource}, attrs.Name, errors.New(msg))
}

// write encodes obj in the first media type the client accepts that the
// API speaks (JSON or protobuf), JSON when it names neither.
func (a *api) write(w http.ResponseWriter, r *http.Request, obj runtime.Object) {
	info := a.mediaType(r.Header.Get("Accept"))
	enc := a.codecs.EncoderForVersion(info.Serializer, groupVersion)
	w.Header().Set("Content-Type", info.MediaType)
	w.WriteHeader(http.StatusOK)
	_ = enc.Encode(obj, w)
}

func (a *api) mediaType(accept string) runtime.SerializerInfo {
	supported := a.codecs.SupportedMediaTypes()
	for _, part := range strings.Split(accept, ",") {
		mt, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.Contains(params, "as=") {
			continue // a Table or other conversion this API does not make
		}
		for _, info := range supported {
			if info.MediaType == strings.TrimSpace(mt) && (mt == runtime.ContentTypeJSON || mt == runtime.ContentTypeProtobuf) {
				return info
			}
		}
	}
	info, _ := runtime.SerializerInfoForMediaType(supported, runtime.ContentTypeJSON)
	return info
}

// writeStatus writes an API error as a metav1.Status, as the API server
// would.
func writeStatus(w http.ResponseWriter, err error) {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		st = apierrors.NewInternalError(err)
	}
	s := st.Status()
	s.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	w.Header().Set("Content-Type", runtime.ContentTypeJSON)
	w.WriteHeader(int(s.Code))
	_ = json.NewEncoder(w).Encode(&s)
}

func writeJSON(w http.ResponseWriter, obj any) {
	w.Header().Set("Content-Type", runtime.ContentTypeJSON)
	_ = json.NewEncoder(w).Encode(obj)
}
