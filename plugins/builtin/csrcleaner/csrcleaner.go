// Package csrcleaner is the built-in plugin that deletes
// CertificateSigningRequests nobody needs any more, as
// kube-controller-manager's certificatesigningrequest-cleaner does:
// approved and issued, denied or failed ones an hour after that happened,
// pending ones a day after they were made, and issued ones as soon as their
// certificate has expired. It also deletes PodCertificateRequests
// PodCertificateRequestExpiration after they were made, as the
// podcertificaterequest-cleaner does (kubelet's requests complete within
// seconds; an old one is abandoned).
package csrcleaner

import (
	"context"
	"crypto/x509"
	"encoding/pem"
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
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name.
const Name = "csrcleaner"

// How long a CSR is kept, as upstream.
const (
	ApprovedExpiration = time.Hour      // after approval, once issued
	DeniedExpiration   = time.Hour      // after denial
	FailedExpiration   = time.Hour      // after the signer failed it
	PendingExpiration  = 24 * time.Hour // after creation, with no decision

	// PodCertificateRequestExpiration is how long a PodCertificateRequest
	// is kept after it was made, whatever its state (upstream's threshold).
	PodCertificateRequestExpiration = 15 * time.Minute
)

// Plugin returns the csrcleaner plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, "0.1.0", setup, informers.WithTransform(transform))
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{certificatesv1.GroupName}, Resources: []string{"certificatesigningrequests"},
			Verbs: []string{"list", "watch", "delete"}},
		{APIGroups: []string{certificatesv1.GroupName}, Resources: []string{"podcertificaterequests"},
			Verbs: []string{"list", "watch", "delete"}},
	}
	return p
}

// transform drops what the cleaner never reads: the request itself (the
// CSR's PEM and identity) and managedFields.
func transform(obj any) (any, error) {
	obj, _ = sdk.StripManagedFields(obj)
	switch o := obj.(type) {
	case *certificatesv1.CertificateSigningRequest:
		o.Spec = certificatesv1.CertificateSigningRequestSpec{}
	case *certificatesv1.PodCertificateRequest:
		// Only its identity and age are read.
		return &certificatesv1.PodCertificateRequest{ObjectMeta: metav1.ObjectMeta{
			Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion,
			CreationTimestamp: o.CreationTimestamp}}, nil
	}
	return obj, nil
}

type controller struct {
	client kubernetes.Interface
	csrs   certlisters.CertificateSigningRequestLister
	pcrs   certlisters.PodCertificateRequestLister
	clock  clock.Clock
	logger *slog.Logger
}

func setup(_ context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	if err := sdk.DecodeConfig(env.Config, &struct{}{}); err != nil {
		return nil, fmt.Errorf("plugin %s takes no configuration: %w", Name, err)
	}
	inf := f.Certificates().V1().CertificateSigningRequests()
	pcrs := f.Certificates().V1().PodCertificateRequests()
	c := &controller{client: client, csrs: inf.Lister(), pcrs: pcrs.Lister(), clock: clock.RealClock{}, logger: env.Logger}
	runCSRs, err := sdk.ReconcileObjects(Name, inf.Informer(), 1, c.reconcile, c.logger)
	if err != nil {
		return nil, err
	}
	runPCRs, err := sdk.ReconcileObjects(Name+"-pcr", pcrs.Informer(), 1, c.reconcilePCR, c.logger)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		go runPCRs(ctx)
		return runCSRs(ctx)
	}, nil
}

// reconcilePCR deletes the PodCertificateRequest key once it is
// PodCertificateRequestExpiration old, and otherwise looks at it again
// then.
func (c *controller) reconcilePCR(ctx context.Context, key string) (sdk.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return sdk.Result{}, nil
	}
	pcr, err := c.pcrs.PodCertificateRequests(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return sdk.Result{}, nil
	}
	if err != nil {
		return sdk.Result{}, err
	}
	if wait := pcr.CreationTimestamp.Add(PodCertificateRequestExpiration).Sub(c.clock.Now()); wait > 0 {
		return sdk.Result{RequeueAfter: wait}, nil
	}
	uid := pcr.UID
	err = c.client.CertificatesV1().PodCertificateRequests(ns).Delete(ctx, name,
		metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return sdk.Result{}, fmt.Errorf("deleting podcertificaterequest %s: %w", key, err)
	}
	c.logger.Info("deleted podcertificaterequest made over 15 minutes ago", "podcertificaterequest", key)
	return sdk.Result{}, nil
}

// reconcile deletes the CSR once its deadline has passed, and otherwise
// looks at it again when it will have.
func (c *controller) reconcile(ctx context.Context, name string) (sdk.Result, error) {
	csr, err := c.csrs.Get(name)
	if apierrors.IsNotFound(err) {
		return sdk.Result{}, nil
	}
	if err != nil {
		return sdk.Result{}, err
	}
	deadline, why, ok := Deadline(csr)
	if !ok {
		return sdk.Result{}, nil
	}
	if wait := deadline.Sub(c.clock.Now()); wait > 0 {
		return sdk.Result{RequeueAfter: wait}, nil
	}
	uid := csr.UID
	err = c.client.CertificatesV1().CertificateSigningRequests().Delete(ctx, name,
		metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return sdk.Result{}, fmt.Errorf("deleting certificatesigningrequest %s: %w", name, err)
	}
	c.logger.Info("deleted certificatesigningrequest", "csr", name, "reason", why)
	return sdk.Result{}, nil
}

// Deadline is when csr is due for deletion and why; ok is false for an
// approved CSR still waiting for its certificate, which is kept (its
// certificate's arrival is an update that brings it back).
func Deadline(csr *certificatesv1.CertificateSigningRequest) (due time.Time, why string, ok bool) {
	consider := func(t time.Time, reason string) {
		if !ok || t.Before(due) {
			due, why, ok = t, reason, true
		}
	}
	issued := len(csr.Status.Certificate) > 0
	for _, cond := range csr.Status.Conditions {
		at := cond.LastUpdateTime.Time
		switch cond.Type {
		case certificatesv1.CertificateApproved:
			if issued {
				consider(at.Add(ApprovedExpiration), "issued over an hour ago")
			}
		case certificatesv1.CertificateDenied:
			consider(at.Add(DeniedExpiration), "denied over an hour ago")
		case certificatesv1.CertificateFailed:
			consider(at.Add(FailedExpiration), "failed over an hour ago")
		}
	}
	if expiry, found := certificateExpiry(csr.Status.Certificate); found {
		consider(expiry, "certificate expired")
	}
	if len(csr.Status.Conditions) == 0 {
		consider(csr.CreationTimestamp.Add(PendingExpiration), "pending for a day")
	}
	return due, why, ok
}

// certificateExpiry is the earliest NotAfter of the PEM certificates in b.
func certificateExpiry(b []byte) (time.Time, bool) {
	var earliest time.Time
	found := false
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return earliest, found
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			continue
		}
		if !found || cert.NotAfter.Before(earliest) {
			earliest, found = cert.NotAfter, true
		}
	}
}
