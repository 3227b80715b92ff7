package ingress

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/e2e/harness"
)

// tinyPort is where the example plugin's data plane serves (its default).
const tinyPort = "8880"

// examplePlugin builds examples/plugins/tinyingress into a plugin
// directory and writes a server configuration that loads it with scope
// both (its leader part on the leader, its node part on every agent)
// under the ingress-controller preset, serving on port; it returns the
// binary and the configuration file.
func examplePlugin(t testing.TB, port string) (bin, config string) {
	t.Helper()
	bin, sum := harness.BuildPlugin(t, "github.com/keelson/keelson/examples/plugins/tinyingress", "tinyingress")
	config = filepath.Join(t.TempDir(), "server.yaml")
	yaml := fmt.Sprintf(`plugins:
  dir: %s
  external:
  - {name: tinyingress, sha256: %s, preset: ingress-controller, scope: both}
  config:
    tinyingress: {port: %s}
`, filepath.Dir(bin), sum, port)
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return bin, config
}

const tinyIngress = `apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: tiny
spec:
  controller: example.com/tinyingress
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: tiny
spec:
  ingressClassName: tiny
  rules:
  - host: tiny.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}
`

// testThirdParty: the example third-party plugin serves the Ingress of its
// own class on every node and writes its status with the nodes' addresses,
// while the built-in plugin leaves that Ingress alone and keeps serving
// the others.
func testThirdParty(t *testing.T, c *cluster) {
	c.apply(t, tinyIngress)
	c.tinyServes(t, tinyPort)
	want := []string{c.Net.Host("a1").IP, c.Net.Host("a2").IP}
	slices.Sort(want)
	harness.Eventually(t, deadline, fmt.Sprintf("Ingress tiny's status holds the nodes' addresses %v", want), func() (bool, string) {
		ing, err := c.kube.NetworkingV1().Ingresses("default").Get(context.Background(), "tiny", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		var got []string
		for _, lb := range ing.Status.LoadBalancer.Ingress {
			got = append(got, lb.IP)
		}
		return slices.Equal(got, want), fmt.Sprint(got)
	})
	// The built-in plugin does not serve another controller's class...
	c.expect(t, "http", "tiny.example", "/x", 404, "404 no Ingress rule matches")
	// ...and still serves its own.
	c.expect(t, "http", "fanout.example", "/foo", 200, "foo-")
}

// tinyServes waits until the example plugin serves tiny.example on port
// of every node.
func (c *cluster) tinyServes(t *testing.T, port string) {
	t.Helper()
	for _, node := range []string{"a1", "a2"} {
		ip := c.Net.Host(node).IP
		harness.Eventually(t, deadline, "the example plugin serves tiny.example on "+node+":"+port, func() (bool, string) {
			out, err := c.client.Exec("curl", "-sS", "--max-time", "5", "--resolve", "tiny.example:"+port+":"+ip,
				"-w", "\n%{http_code}", "http://tiny.example:"+port+"/x")
			return err == nil && strings.HasPrefix(out, "web-") && strings.HasSuffix(out, "\n200"), out + fmt.Sprint(err)
		})
	}
}

// TestIngressReplaced: with the built-in ingress plugin left out
// (--disable-plugin ingress), the example third-party plugin takes ports
// 80 of every node and serves its class there; nothing of the built-in
// runs (no IngressClass keelson, no ingress Service).
func TestIngressReplaced(t *testing.T) {
	c := startClusterWith(t, clusterOptions{poolSize: 1, tinyPort: "80", disableIngress: true})
	harness.Eventually(t, deadline, "the default ServiceAccount", func() (bool, string) {
		_, err := c.kube.CoreV1().ServiceAccounts("default").Get(context.Background(), "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	c.apply(t, backend("web", 1))
	c.readyPods(t, "web", 1)
	c.apply(t, tinyIngress)
	c.tinyServes(t, "80")
	ctx := context.Background()
	if _, err := c.kube.NetworkingV1().IngressClasses().Get(ctx, "keelson", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("IngressClass keelson: %v; want NotFound with the built-in plugin disabled", err)
	}
	if _, err := c.kube.CoreV1().Services("kube-system").Get(ctx, "keelson-ingress", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Service kube-system/keelson-ingress: %v; want NotFound with the built-in plugin disabled", err)
	}
}
