package kcm

import (
	"strings"
	"testing"

	"github.com/keelson/keelson/e2e/harness"
)

const extraCIDR = `apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata:
  name: extra
spec:
  cidrs: ["10.99.0.0/24"]
`

const extraService = `apiVersion: v1
kind: Service
metadata:
  name: in-extra
spec:
  clusterIP: 10.99.0.10
  ports: [{port: 80}]
`

// An extra ServiceCIDR becomes Ready, serves a ClusterIP, and is not
// deleted while that Service holds an address only it contains.
func testServiceCIDR(t *testing.T, srv *harness.Server) {
	if r := srv.KubectlIn(t, extraCIDR, "create", "-f", "-"); r.ExitCode != 0 {
		t.Fatalf("creating ServiceCIDR extra:\n%s", r)
	}
	harness.Eventually(t, waitTimeout, "extra Ready with its finalizer", func() (bool, string) {
		r := srv.Kubectl(t, "get", "servicecidr", "extra", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status} {.metadata.finalizers}`)
		return strings.HasPrefix(r.Stdout, "True ") && strings.Contains(r.Stdout, "networking.k8s.io/service-cidr-finalizer"), r.String()
	})
	if r := srv.KubectlIn(t, extraService, "create", "-n", "default", "-f", "-"); r.ExitCode != 0 {
		t.Fatalf("creating a Service in extra:\n%s", r)
	}
	srv.MustKubectl(t, "delete", "servicecidr", "extra", "--wait=false")
	harness.Eventually(t, waitTimeout, "extra held while its address is used", func() (bool, string) {
		r := srv.Kubectl(t, "get", "servicecidr", "extra", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].reason}`)
		return r.Stdout == "Terminating", r.String()
	})
	srv.MustKubectl(t, "delete", "service", "in-extra", "-n", "default")
	harness.Eventually(t, waitTimeout, "extra gone once nothing uses it", func() (bool, string) {
		r := srv.Kubectl(t, "get", "servicecidr", "extra")
		return r.ExitCode != 0 && strings.Contains(r.Stderr, "NotFound"), r.String()
	})
}
