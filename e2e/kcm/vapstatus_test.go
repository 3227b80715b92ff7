package kcm

import (
	"strings"
	"testing"

	"github.com/keelson/keelson/e2e/harness"
)

const replicaPolicy = `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: replicas
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: ["apps"]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["deployments"]
  validations:
  - expression: "object.spec.replicas <= 5"
  - expression: "object.spec.replicaz <= 5"
`

// A policy's expressions are type-checked against the kinds it matches:
// the misspelt field is reported, the good expression is not.
func testPolicyStatus(t *testing.T, srv *harness.Server) {
	if r := srv.KubectlIn(t, replicaPolicy, "create", "-f", "-"); r.ExitCode != 0 {
		t.Fatalf("creating the policy:\n%s", r)
	}
	harness.Eventually(t, waitTimeout, "type check of the policy", func() (bool, string) {
		r := srv.Kubectl(t, "get", "validatingadmissionpolicy", "replicas", "-o",
			`jsonpath={.status.observedGeneration}|{.status.typeChecking.expressionWarnings[*].fieldRef}|{.status.typeChecking.expressionWarnings[*].warning}`)
		f := strings.SplitN(r.Stdout, "|", 3)
		return len(f) == 3 && f[0] == "1" && f[1] == "spec.validations[1].expression" && strings.Contains(f[2], "replicaz"), r.String()
	})
}
