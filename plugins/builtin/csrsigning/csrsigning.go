// Package csrsigning is the built-in plugin that issues certificates for
// approved CertificateSigningRequests of the signers
// kubernetes.io/kube-apiserver-client, kube-apiserver-client-kubelet,
// kubelet-serving and legacy-unknown, as kube-controller-manager's
// csrsigning controller does.
//
// It signs with the signer CA the server hands it in its configuration
// (caCertPEM, caKeyPEM), never with the cluster CA: the API server trusts
// that CA for clients, and nothing in Keelson trusts it for servers, peers
// or nodes (see core/pki), so this plugin's key can mint API clients only.
package csrsigning

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	certlisters "k8s.io/client-go/listers/certificates/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/builtin/internal/csrrules"
	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name.
const Name = "csrsigning"

// Config is the plugin's configuration section.
type Config struct {
	// CACertPEM and CAKeyPEM are the signer CA; the server fills them in.
	CACertPEM string `json:"caCertPEM"`
	CAKeyPEM  string `json:"caKeyPEM"`
	// ClusterSigningDuration is the longest validity a certificate gets
	// (kube-controller-manager's --cluster-signing-duration, default one
	// year); spec.expirationSeconds may ask for less.
	ClusterSigningDuration metav1.Duration `json:"clusterSigningDuration"`
}

// DefaultSigningDuration is ClusterSigningDuration's default.
const DefaultSigningDuration = 365 * 24 * time.Hour

// Plugin returns the csrsigning plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, "0.1.0", setup, informers.WithTransform(sdk.StripManagedFields))
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{certificatesv1.GroupName}, Resources: []string{"certificatesigningrequests"},
			Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{certificatesv1.GroupName}, Resources: []string{"certificatesigningrequests/status"},
			Verbs: []string{"update"}},
		{APIGroups: []string{certificatesv1.GroupName}, Resources: []string{"signers"},
			ResourceNames: csrrules.Signers, Verbs: []string{"sign"}},
		sdk.EventRule,
	}
	return p
}

type controller struct {
	client kubernetes.Interface
	csrs   certlisters.CertificateSigningRequestLister
	ca     *authority
	events record.EventRecorder
	logger *slog.Logger
}

func setup(ctx context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	cfg := Config{ClusterSigningDuration: metav1.Duration{Duration: DefaultSigningDuration}}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return nil, err
	}
	ca, err := newAuthority(cfg, clock.RealClock{})
	if err != nil {
		return nil, fmt.Errorf("plugins.config.%s: %w", Name, err)
	}
	inf := f.Certificates().V1().CertificateSigningRequests()
	c := &controller{client: client, csrs: inf.Lister(), ca: ca, events: sdk.NewEventRecorder(ctx, client, Name), logger: env.Logger}
	return sdk.ReconcileObjects(Name, inf.Informer(), 1, c.reconcile, c.logger)
}

// reconcile issues the certificate of an approved CSR of one of our
// signers, or marks it Failed when the request breaks its signer's rules.
func (c *controller) reconcile(ctx context.Context, name string) (sdk.Result, error) {
	csr, err := c.csrs.Get(name)
	if apierrors.IsNotFound(err) {
		return sdk.Result{}, nil
	}
	if err != nil {
		return sdk.Result{}, err
	}
	if csrrules.StateOf(csr) != csrrules.Approved || !ours(csr.Spec.SignerName) {
		return sdk.Result{}, nil
	}
	csr = csr.DeepCopy()
	certPEM, err := c.ca.sign(csr)
	var invalid *invalidRequest
	switch {
	case errors.As(err, &invalid):
		return sdk.Result{}, c.fail(ctx, csr, invalid)
	case err != nil:
		return sdk.Result{}, fmt.Errorf("signing certificatesigningrequest %s: %w", name, err)
	}
	csr.Status.Certificate = certPEM
	if _, err := c.client.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, csr, metav1.UpdateOptions{}); err != nil {
		return sdk.Result{}, fmt.Errorf("storing the certificate of certificatesigningrequest %s: %w", name, err)
	}
	c.logger.Info("issued certificate", "csr", name, "signer", csr.Spec.SignerName, "user", csr.Spec.Username)
	return sdk.Result{}, nil
}

// fail records that the request cannot be signed, for good: a Failed CSR
// is never looked at again.
func (c *controller) fail(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, why *invalidRequest) error {
	now := metav1.Now()
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateFailed, Status: "True", Reason: "SignerValidationFailure",
		Message: why.Error(), LastUpdateTime: now, LastTransitionTime: now,
	})
	if _, err := c.client.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, csr, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("marking certificatesigningrequest %s failed: %w", csr.Name, err)
	}
	c.events.Event(csr, "Warning", "SignerValidationFailure", why.Error())
	c.logger.Info("refused to sign", "csr", csr.Name, "signer", csr.Spec.SignerName, "reason", why.Error())
	return nil
}

func ours(signer string) bool {
	for _, s := range csrrules.Signers {
		if s == signer {
			return true
		}
	}
	return false
}
