package gatewaycrds

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCopiesMatchModule: the embedded files are the pinned module's own,
// byte for byte (run `go generate ./internal/gatewaycrds` after bumping
// sigs.k8s.io/gateway-api).
func TestCopiesMatchModule(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}} {{.Version}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Skipf("go list of the gateway-api module: %v", err)
	}
	dir, version, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	crds, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	if len(crds) < 4 {
		t.Fatalf("%d CRDs embedded; want at least GatewayClass, Gateway, HTTPRoute and ReferenceGrant", len(crds))
	}
	for _, c := range crds {
		if got := c.Annotations[BundleVersionAnnotation]; got != version {
			t.Errorf("CRD %s is of bundle version %q; go.mod pins %s: run go generate", c.Name, got, version)
		}
		name := "gateway.networking.k8s.io_" + strings.TrimSuffix(c.Name, ".gateway.networking.k8s.io") + ".yaml"
		want, err := os.ReadFile(filepath.Join(dir, "config", "crd", "standard", name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := files.ReadFile("standard/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("standard/%s differs from the module's: run go generate", name)
		}
	}
	for _, want := range []string{"gatewayclasses", "gateways", "httproutes", "referencegrants"} {
		found := false
		for _, c := range crds {
			found = found || c.Name == want+".gateway.networking.k8s.io"
		}
		if !found {
			t.Errorf("CRD %s.gateway.networking.k8s.io missing", want)
		}
	}
}
