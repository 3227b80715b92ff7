// Package csrapproving is the built-in plugin that approves kubelet client
// CertificateSigningRequests whose requester is allowed to ask for them, as
// kube-controller-manager's csrapproving controller does: a request for
// kubernetes.io/kube-apiserver-client-kubelet that is a valid node client
// request is approved when a SubjectAccessReview allows its requester
// `create certificatesigningrequests/selfnodeclient` (a node renewing its
// own identity) or `create certificatesigningrequests/nodeclient` (a
// bootstrapper asking for a new node). Nothing else is auto-approved.
package csrapproving

import (
	"context"
	"fmt"
	"log/slog"

	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	certlisters "k8s.io/client-go/listers/certificates/v1"

	"github.com/keelson/keelson/plugins/builtin/internal/csrrules"
	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name.
const Name = "csrapproving"

// Plugin returns the csrapproving plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, "0.1.0", setup, informers.WithTransform(sdk.StripManagedFields))
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{certificatesv1.GroupName}, Resources: []string{"certificatesigningrequests"},
			Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{certificatesv1.GroupName}, Resources: []string{"certificatesigningrequests/approval"},
			Verbs: []string{"update"}},
		{APIGroups: []string{certificatesv1.GroupName}, Resources: []string{"signers"},
			ResourceNames: []string{csrrules.APIServerClientKubelet}, Verbs: []string{"approve"}},
		{APIGroups: []string{authorizationv1.GroupName}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
	}
	return p
}

// recognizer is one kind of request that may be approved automatically and
// the subresource its requester must be allowed to create.
type recognizer struct {
	subresource string
	message     string
	matches     func(csr *certificatesv1.CertificateSigningRequest, cn string) bool
}

var recognizers = []recognizer{
	{"selfnodeclient", "Auto approving self kubelet client certificate after SubjectAccessReview.",
		func(csr *certificatesv1.CertificateSigningRequest, cn string) bool { return csr.Spec.Username == cn }},
	{"nodeclient", "Auto approving kubelet client certificate after SubjectAccessReview.",
		func(*certificatesv1.CertificateSigningRequest, string) bool { return true }},
}

type controller struct {
	client kubernetes.Interface
	csrs   certlisters.CertificateSigningRequestLister
	logger *slog.Logger
}

func setup(_ context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	if err := sdk.DecodeConfig(env.Config, &struct{}{}); err != nil {
		return nil, fmt.Errorf("plugin %s takes no configuration: %w", Name, err)
	}
	inf := f.Certificates().V1().CertificateSigningRequests()
	c := &controller{client: client, csrs: inf.Lister(), logger: env.Logger}
	return sdk.ReconcileObjects(Name, inf.Informer(), 1, c.reconcile, c.logger)
}

func (c *controller) reconcile(ctx context.Context, name string) (sdk.Result, error) {
	csr, err := c.csrs.Get(name)
	if apierrors.IsNotFound(err) {
		return sdk.Result{}, nil
	}
	if err != nil {
		return sdk.Result{}, err
	}
	if csrrules.StateOf(csr) != csrrules.Pending || csr.Spec.SignerName != csrrules.APIServerClientKubelet {
		return sdk.Result{}, nil
	}
	req, err := csrrules.ParseRequest(csr.Spec.Request)
	if err != nil || csrrules.KubeletClient(req, csr.Spec.Usages) != nil {
		return sdk.Result{}, nil // not a node client request: left to a person
	}
	for _, r := range recognizers {
		if !r.matches(csr, req.Subject.CommonName) {
			continue
		}
		allowed, err := c.allowed(ctx, csr, r.subresource)
		if err != nil {
			return sdk.Result{}, err
		}
		if allowed {
			return sdk.Result{}, c.approve(ctx, csr.DeepCopy(), r.message)
		}
	}
	return sdk.Result{}, nil
}

// allowed asks whether the CSR's requester may create the subresource.
func (c *controller) allowed(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, subresource string) (bool, error) {
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range csr.Spec.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: csr.Spec.Username, UID: csr.Spec.UID, Groups: csr.Spec.Groups, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Group: certificatesv1.GroupName, Resource: "certificatesigningrequests", Subresource: subresource, Verb: "create",
		},
	}}
	got, err := c.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("asking whether %s may create certificatesigningrequests/%s: %w", csr.Spec.Username, subresource, err)
	}
	return got.Status.Allowed, nil
}

func (c *controller) approve(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, message string) error {
	now := metav1.Now()
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: v1.ConditionTrue, Reason: "AutoApproved",
		Message: message, LastUpdateTime: now, LastTransitionTime: now,
	})
	if _, err := c.client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("approving certificatesigningrequest %s: %w", csr.Name, err)
	}
	c.logger.Info("approved certificatesigningrequest", "csr", csr.Name, "user", csr.Spec.Username, "reason", message)
	return nil
}
