package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func (c *cluster) testServiceAccountAndRootCA(t *testing.T) {
	ctx := context.Background()
	ns := c.newNamespace(t, "sa")
	cms := c.kube.CoreV1().ConfigMaps(ns)
	wantCA := string(c.cfg.CAData)
	rootCA := func() error {
		cm, err := cms.Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cm.Data["ca.crt"] != wantCA {
			return fmt.Errorf("ca.crt is %q, want the API server's CA", cm.Data["ca.crt"])
		}
		if cm.Annotations["kubernetes.io/description"] == "" {
			return errors.New("no kubernetes.io/description annotation")
		}
		return nil
	}
	eventually(t, "kube-root-ca.crt published", rootCA)

	// Tampered with, it is restored; deleted, it comes back.
	cm, err := cms.Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["ca.crt"] = "not a CA"
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("editing kube-root-ca.crt: %v", err)
	}
	eventually(t, "kube-root-ca.crt restored after an edit", rootCA)
	if err := cms.Delete(ctx, "kube-root-ca.crt", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "kube-root-ca.crt recreated after deletion", rootCA)

	// So does the default ServiceAccount.
	if err := c.kube.CoreV1().ServiceAccounts(ns).Delete(ctx, "default", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "default service account recreated", func() error {
		_, err := c.kube.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	c.kubectl(t, "-n", ns, "get", "serviceaccount", "default")
}

func (c *cluster) testLegacyTokenSecret(t *testing.T) {
	ctx := context.Background()
	ns := c.newNamespace(t, "tokens")
	sa, err := c.kube.CoreV1().ServiceAccounts(ns).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "builder"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.kubectlIn(t, `apiVersion: v1
kind: Secret
metadata:
  name: builder-token
  annotations:
    kubernetes.io/service-account.name: builder
type: kubernetes.io/service-account-token
`, "-n", ns, "apply", "-f", "-")

	var secret *corev1.Secret
	eventually(t, "token secret populated", func() error {
		secret, err = c.kube.CoreV1().Secrets(ns).Get(ctx, "builder-token", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, k := range []string{"token", "ca.crt", "namespace"} {
			if len(secret.Data[k]) == 0 {
				return fmt.Errorf("data.%s is empty", k)
			}
		}
		return nil
	})
	if got := secret.Annotations[corev1.ServiceAccountUIDKey]; got != string(sa.UID) {
		t.Errorf("uid annotation %q, want the service account's %q", got, sa.UID)
	}
	if string(secret.Data["namespace"]) != ns || string(secret.Data["ca.crt"]) != string(c.cfg.CAData) {
		t.Errorf("namespace %q / ca.crt do not match the namespace and the cluster CA", secret.Data["namespace"])
	}

	// The API server accepts the token as the service account.
	user := rest.AnonymousClientConfig(c.cfg)
	user.BearerToken = string(secret.Data["token"])
	uc, err := kubernetes.NewForConfig(user)
	if err != nil {
		t.Fatal(err)
	}
	review, err := uc.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("authenticating with the legacy token: %v", err)
	}
	if want := "system:serviceaccount:" + ns + ":builder"; review.Status.UserInfo.Username != want {
		t.Errorf("token authenticates as %q, want %q", review.Status.UserInfo.Username, want)
	}

	// Deleting the service account deletes its token secret.
	if err := c.kube.CoreV1().ServiceAccounts(ns).Delete(ctx, "builder", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "token secret of a deleted service account removed", gone(func() error {
		_, err := c.kube.CoreV1().Secrets(ns).Get(ctx, "builder-token", metav1.GetOptions{})
		return err
	}))
}
