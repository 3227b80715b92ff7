package ingress

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayv1alpha2 "sigs.k8s.io/gateway-api/apis/v1alpha2"
	gatewayv1alpha3 "sigs.k8s.io/gateway-api/apis/v1alpha3"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"
	xv1alpha1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"
	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/tests"
	"sigs.k8s.io/gateway-api/conformance/utils/config"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
	"sigs.k8s.io/yaml"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/plugins/builtin/ingress"
)

// echoBasicTags are the tags under which the suite's base manifests ask
// for echo-basic; one image built here from the module's source serves
// them all.
var echoBasicTags = []string{"registry.k8s.io/gateway-api/echo-basic:v1.5.1", "registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.3"}

// TestGatewayConformance runs the upstream Gateway API conformance suite
// (sigs.k8s.io/gateway-api/conformance at the version go.mod pins), profile
// GATEWAY-HTTP, against a real cluster; the suite's own client reaches the
// Gateways' addresses on the test's bridge. Run by `make
// conformance-gateway`; KEELSON_GATEWAY_REPORT names the report file.
func TestGatewayConformance(t *testing.T) {
	report := os.Getenv("KEELSON_GATEWAY_REPORT")
	if report == "" {
		t.Skip("set KEELSON_GATEWAY_REPORT (make conformance-gateway) to run the Gateway API conformance suite")
	}
	images := map[string][]byte{}
	for i, tag := range echoBasicTags {
		images["echo-basic-"+string(rune('a'+i))+".tar"] = binaryImage(t, ".", "sigs.k8s.io/gateway-api/conformance/echo-basic", "echo-basic", tag)
	}
	c := startClusterPool(t, 24, images)
	cfg := c.Servers[0].RESTConfig(t)
	cl, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, add := range []func(*runtime.Scheme) error{gatewayv1.Install, gatewayv1beta1.Install, gatewayv1alpha2.Install,
		gatewayv1alpha3.Install, xv1alpha1.Install, apiextensionsv1.AddToScheme} {
		if err := add(cl.Scheme()); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The suite fails at once on a GatewayClass it cannot fetch: wait for
	// the plugin to have made it.
	harness.Eventually(t, 3*time.Minute, "GatewayClass "+ingress.GatewayClassName, func() (bool, string) {
		err := cl.Get(context.Background(), client.ObjectKey{Name: ingress.GatewayClassName}, &gatewayv1.GatewayClass{})
		return err == nil, fmt.Sprint(err)
	})
	// The features the plugin publishes in its GatewayClass's status are
	// the ones claimed, so the suite runs a test for each.
	var supported []features.FeatureName
	for _, f := range ingress.SupportedFeatures {
		supported = append(supported, features.FeatureName(f))
	}
	if extra := os.Getenv("KEELSON_GATEWAY_FEATURES"); extra != "" {
		for _, f := range strings.Split(extra, ",") {
			supported = append(supported, features.FeatureName(f))
		}
	}
	opts := suite.ConformanceOptions{
		ConfigurableOptions: suite.ConfigurableOptions{
			GatewayClassName:     ingress.GatewayClassName,
			CleanupBaseResources: true,
			CleanupTestResources: true,
			SupportedFeatures:    supported,
			ConformanceProfiles:  []suite.ConformanceProfileName{suite.GatewayHTTPConformanceProfileName},
			ReportOutputPath:     report,
			RunTest:              os.Getenv("KEELSON_GATEWAY_TEST"),
			Mode:                 "default",
			Implementation: confv1.Implementation{Organization: "keelson", Project: "keelson",
				URL: "https://github.com/keelson/keelson", Version: "v0.1.0", Contact: []string{"@keelson/maintainers"}},
		},
		Client: cl, Clientset: cs, RestConfig: cfg,
		ManifestFS: []fs.FS{withoutCoreDNS(t)},
	}
	opts.TimeoutConfig = config.DefaultTimeoutConfig()
	cSuite, err := suite.NewConformanceTestSuite(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r, err := cSuite.Report()
		if err != nil {
			t.Errorf("the suite's report: %v", err)
			return
		}
		if err := writeConformanceReport(report, r); err != nil {
			t.Error(err)
		}
	})
	cSuite.Setup(t, tests.ConformanceTests)
	if err := cSuite.Run(t, tests.ConformanceTests); err != nil {
		t.Error(err)
	}
}

// withoutCoreDNS is the suite's manifests with the base manifests' coredns
// Deployment left out: it serves only the UDPRoute tests (not in
// GATEWAY-HTTP), and its image is not built here, so its pod would never
// be ready and the suite's setup would wait for it forever.
func withoutCoreDNS(t *testing.T) fs.FS {
	t.Helper()
	raw, err := fs.ReadFile(&conformance.Manifests, "base/manifests.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var kept [][]byte
	for _, doc := range bytes.Split(raw, []byte("\n---\n")) {
		if bytes.Contains(doc, []byte("kind: Deployment")) && bytes.Contains(doc, []byte("name: coredns")) {
			continue
		}
		kept = append(kept, doc)
	}
	return overlayFS{base: &conformance.Manifests, over: fstest.MapFS{
		"base/manifests.yaml": &fstest.MapFile{Data: bytes.Join(kept, []byte("\n---\n")), Mode: 0o444},
	}}
}

type overlayFS struct {
	base fs.FS
	over fstest.MapFS
}

func (o overlayFS) Open(name string) (fs.File, error) {
	if _, ok := o.over[name]; ok {
		return o.over.Open(name)
	}
	return o.base.Open(name)
}

// writeConformanceReport writes the suite's report as YAML.
func writeConformanceReport(path string, r *confv1.ConformanceReport) error {
	raw, err := yaml.Marshal(r)
	if err != nil {
		return err
	}
	return os.WriteFile(path, raw, 0o644)
}
