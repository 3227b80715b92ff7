package serviceaccount

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	certinformers "k8s.io/client-go/informers/certificates/v1"
	"k8s.io/client-go/kubernetes"
	certlisters "k8s.io/client-go/listers/certificates/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/sdk"
)

// ServingSigner is the signer whose ClusterTrustBundle carries the CA the
// API server is served with, as kube-controller-manager's
// kube-apiserver-serving-clustertrustbundle-publisher publishes it: pods
// read it through clusterTrustBundle projected volumes.
const ServingSigner = "kubernetes.io/kube-apiserver-serving"

// BundleName is the name of signer's ClusterTrustBundle holding bundle:
// the signer name with ':' for '/', then the first 12 bytes of the
// bundle's SHA-256, as upstream names it (a new CA gets a new object).
func BundleName(signer string, bundle []byte) string {
	sum := sha256.Sum256(bundle)
	return fmt.Sprintf("%s:%x", strings.ReplaceAll(signer, "/", ":"), sum[:12])
}

// trustBundles keeps exactly one ClusterTrustBundle for ServingSigner,
// holding the cluster CA, and deletes any other of that signer.
type trustBundles struct {
	client  kubernetes.Interface
	bundles certlisters.ClusterTrustBundleLister
	ca      string
}

// watchTrustBundles registers the informer of ServingSigner's bundles and
// returns the loop that keeps them; every change to them requeues the
// one key.
func watchTrustBundles(f informers.SharedInformerFactory, client kubernetes.Interface, ca string, env sdk.Env) (func(context.Context) error, error) {
	inf := f.InformerFor(&certificatesv1.ClusterTrustBundle{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return certinformers.NewFilteredClusterTrustBundleInformer(c, resync, cache.Indexers{}, func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.signerName", ServingSigner).String()
		})
	})
	t := &trustBundles{client: client, bundles: certlisters.NewClusterTrustBundleLister(inf.GetIndexer()), ca: ca}
	q := sdk.NewQueue[string](Name + "-trustbundle")
	enqueue := func(any) { q.Add(ServingSigner) }
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: enqueue,
	}); err != nil {
		return nil, fmt.Errorf("watching clustertrustbundles: %w", err)
	}
	return func(ctx context.Context) error {
		q.Add(ServingSigner) // also when there is no bundle yet
		sdk.RunWorkers(ctx, q, 1, t.reconcile, env.Logger)
		return nil
	}, nil
}

func (t *trustBundles) reconcile(ctx context.Context, _ string) (sdk.Result, error) {
	name := BundleName(ServingSigner, []byte(t.ca))
	api := t.client.CertificatesV1().ClusterTrustBundles()
	existing, err := t.bundles.Get(name)
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, &certificatesv1.ClusterTrustBundle{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       certificatesv1.ClusterTrustBundleSpec{SignerName: ServingSigner, TrustBundle: t.ca},
		}, metav1.CreateOptions{})
	case err == nil && existing.Spec.TrustBundle != t.ca:
		next := existing.DeepCopy()
		next.Spec.TrustBundle = t.ca
		_, err = api.Update(ctx, next, metav1.UpdateOptions{})
	}
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return sdk.Result{}, fmt.Errorf("publishing clustertrustbundle %s: %w", name, err)
	}
	all, err := t.bundles.List(labels.Everything())
	if err != nil {
		return sdk.Result{}, err
	}
	for _, b := range all {
		if b.Name == name || b.Spec.SignerName != ServingSigner {
			continue
		}
		if err := api.Delete(ctx, b.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return sdk.Result{}, fmt.Errorf("deleting the outdated clustertrustbundle %s: %w", b.Name, err)
		}
	}
	return sdk.Result{}, nil
}
