package kcm

import (
	"strings"
	"testing"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/plugins/builtin/serviceaccount"
)

// The cluster CA is published as the kube-apiserver-serving signer's
// ClusterTrustBundle, named by its hash and equal to kube-root-ca.crt.
func testTrustBundle(t *testing.T, srv *harness.Server) {
	var rootCA string
	harness.Eventually(t, waitTimeout, "kube-root-ca.crt in default", func() (bool, string) {
		r := srv.Kubectl(t, "get", "configmap", "-n", "default", serviceaccount.RootCAConfigMap, "-o", `jsonpath={.data.ca\.crt}`)
		rootCA = r.Stdout
		return r.ExitCode == 0 && strings.Contains(rootCA, "BEGIN CERTIFICATE"), r.String()
	})
	want := serviceaccount.BundleName(serviceaccount.ServingSigner, []byte(rootCA))
	harness.Eventually(t, waitTimeout, "the serving signer's ClusterTrustBundle", func() (bool, string) {
		r := srv.Kubectl(t, "get", "clustertrustbundles", "--field-selector", "spec.signerName="+serviceaccount.ServingSigner,
			"-o", `jsonpath={range .items[*]}{.metadata.name}|{.spec.trustBundle}{"\n"}{end}`)
		name, bundle, _ := strings.Cut(strings.TrimSuffix(r.Stdout, "\n"), "|")
		return r.ExitCode == 0 && name == want && bundle == rootCA && !strings.Contains(bundle, "\n\n"), r.String()
	})
	// The legacy token cleaner dates token use from what kube-apiserver
	// records; the PodCertificateRequest cleaner's informer synced (the
	// csrcleaner plugin is ready), so that API is served.
	if r := srv.Kubectl(t, "get", "configmap", "-n", "kube-system", "kube-apiserver-legacy-service-account-token-tracking",
		"-o", "jsonpath={.data.since}"); r.ExitCode != 0 || len(r.Stdout) != len("2006-01-02") {
		t.Errorf("kube-apiserver's token tracking ConfigMap:\n%s", r)
	}
	if r := srv.Kubectl(t, "get", "podcertificaterequests", "-A"); r.ExitCode != 0 {
		t.Errorf("podcertificaterequests not served:\n%s", r)
	}
}
