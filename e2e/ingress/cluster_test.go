package ingress

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/e2e/ha"
	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/nodeagent"
	"github.com/keelson/keelson/internal/testimage"
	"github.com/keelson/keelson/internal/testnet"
	"github.com/keelson/keelson/plugins/builtin/ingress"
)

// deadline bounds every wait: a hang guard on a shared machine, not a
// timing claim.
const deadline = 3 * time.Minute

// echoImage is the backends' image: busybox with testdata/echo at /echo.
const echoImage = "keelson.test/echo:e2e"

type cluster struct {
	*ha.Cluster
	kube   kubernetes.Interface
	client *ha.Host
	// lbIP is the pool's one address, the ingress Service's.
	lbIP string
}

func startCluster(t *testing.T) *cluster { t.Helper(); return startClusterPool(t, 1, nil) }

// startClusterPool starts the cluster with a LoadBalancer pool of poolSize
// addresses from .200 of the bridge's subnet (lbIP is the first) and
// images, by file name, in every agent's images directory.
func startClusterPool(t *testing.T, poolSize int, images map[string][]byte) *cluster {
	t.Helper()
	return startClusterWith(t, clusterOptions{poolSize: poolSize, images: images, tinyPort: tinyPort})
}

// clusterOptions: the pool's size, images for the agents, the example
// plugin's port and whether the built-in ingress plugin is left out.
type clusterOptions struct {
	poolSize       int
	images         map[string][]byte
	tinyPort       string
	disableIngress bool
}

func startClusterWith(t testing.TB, o clusterOptions) *cluster {
	t.Helper()
	poolSize, images := o.poolSize, o.images
	nodeagent.Require(t)
	ha.RequireNetns(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl")
	}
	cidr, err := testnet.ClusterCIDR()
	if err != nil {
		t.Fatal(err)
	}
	image := echoTarball(t)
	tiny, serverConfig := examplePlugin(t, o.tinyPort)
	tinyBin, err := os.ReadFile(tiny)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{}
	c.Cluster = ha.NewCluster(t, ha.Options{Servers: 1, APIServer: true, Hosts: []string{"a1", "a2", "client"},
		Args: append([]string{"--cluster-cidr", cidr, "--config", serverConfig}, disable(o.disableIngress)...),
		NetArgs: func(n *ha.Network) []string {
			// An address of the bridge's subnet no host uses (hosts
			// take .11 upwards, the bridge .1).
			b := n.BridgeIP()
			prefix := b[:strings.LastIndex(b, ".")+1]
			c.lbIP = prefix + "200"
			pool := c.lbIP + "/32"
			if poolSize > 1 {
				pool = fmt.Sprintf("%s-%s%d", c.lbIP, prefix, 200+poolSize-1)
			}
			return []string{"--load-balancer-pool", "lan=" + pool}
		}})
	c.kube = c.Servers[0].Clientset(t)
	c.client = c.Net.Host("client")
	c.StartAgents(t, cidr, []string{"a1", "a2"}, ha.AgentOptions{Prepare: func(a *nodeagent.Agent) {
		if err := os.WriteFile(filepath.Join(a.DataDir, "images", "echo.tar"), image, 0o644); err != nil {
			t.Fatal(err)
		}
		for name, data := range images {
			if err := os.WriteFile(filepath.Join(a.DataDir, "images", name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// The example ingress plugin's node part, in the agent's plugin dir.
		if err := os.MkdirAll(filepath.Join(a.DataDir, "plugins"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(a.DataDir, "plugins", "tinyingress"), tinyBin, 0o755); err != nil {
			t.Fatal(err)
		}
	}})
	return c
}

func disable(ingress bool) []string {
	if ingress {
		return []string{"--disable-plugin", "ingress"}
	}
	return nil
}

// echoTarball builds testdata/echo and returns the image tarball.
func echoTarball(t testing.TB) []byte {
	t.Helper()
	return binaryImage(t, filepath.Join("testdata", "echo"), ".", "echo", echoImage)
}

// binaryImage builds the Go package pkg (from dir) into /name of a
// busybox image tagged ref, and returns the image tarball.
func binaryImage(t testing.TB, dir, pkg, name, ref string) []byte {
	t.Helper()
	out := t.TempDir()
	bin := filepath.Join(out, name)
	build := exec.Command("go", "build", "-o", bin, pkg)
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v: %s", pkg, err, out)
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(exe)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(exe)
	tw.Close()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	base, err := testimage.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, l)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.Config.Entrypoint, cfg.Config.Cmd = []string{"/" + name}, nil
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(out, name+".tar")
	if err := testimage.WriteTarball(path, ref, img); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// backend is a Deployment of echo pods and its Service (port 80, named
// http, to the pods' 8080).
func backend(name string, replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  selector:
    matchLabels: {app: %[1]s}
  replicas: %[2]d
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: echo
        image: %[3]s
        imagePullPolicy: Never
        command: [/echo]
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        readinessProbe:
          httpGet: {path: /ready, port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: %[1]s
spec:
  selector: {app: %[1]s}
  ports:
  - name: http
    port: 80
    targetPort: 8080
`, name, replicas, echoImage)
}

func (c *cluster) kubectl(t testing.TB) harness.Kubectl {
	return harness.Kubectl{Bin: harness.KeelsonBin(t), Kubeconfig: filepath.Join(c.Servers[0].DataDir(), "admin.kubeconfig")}
}

func (c *cluster) apply(t testing.TB, yaml string) {
	t.Helper()
	c.kubectl(t).MustIn(t, yaml, "apply", "-n", "default", "-f", "-")
}

// readyPods waits for n ready pods of app and returns their names.
func (c *cluster) readyPods(t testing.TB, app string, n int) []string {
	t.Helper()
	var names []string
	harness.Eventually(t, deadline, fmt.Sprintf("%d ready %s pods", n, app), func() (bool, string) {
		pods, err := c.kube.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			return false, err.Error()
		}
		names = nil
		var states []string
		for _, p := range pods.Items {
			states = append(states, p.Name+":"+string(p.Status.Phase))
			for _, cond := range p.Status.Conditions {
				if cond.Type == v1.PodReady && cond.Status == v1.ConditionTrue && p.DeletionTimestamp == nil {
					names = append(names, p.Name)
				}
			}
		}
		return len(names) == n, strings.Join(states, " ")
	})
	return names
}

// response is what the client got.
type response struct {
	code int
	body string
}

func (r response) String() string { return fmt.Sprintf("%d %q", r.code, r.body) }

// get asks scheme://host/path from the client namespace, resolving host to
// the ingress address; extra are further curl flags.
func (c *cluster) get(scheme, host, path string, extra ...string) (response, error) {
	return c.getAt(c.lbIP, scheme, host, path, extra...)
}

// getAt is get through the address addr.
func (c *cluster) getAt(addr, scheme, host, path string, extra ...string) (response, error) {
	port := map[string]string{"http": "80", "https": "443"}[scheme]
	args := append([]string{"curl", "-sS", "--max-time", "5", "--resolve", host + ":" + port + ":" + addr,
		"-w", "\n%{http_code}"}, extra...)
	out, err := c.client.Exec(append(args, scheme+"://"+host+path)...)
	if err != nil {
		return response{}, err
	}
	out = strings.TrimSpace(out)
	i := strings.LastIndexByte(out, '\n')
	var r response
	fmt.Sscan(out[i+1:], &r.code)
	if i > 0 {
		r.body = out[:i]
	}
	return r, nil
}

// expect waits until host/path answers code with a body starting with
// prefix (a backend's pod name prefix, or the 404 text): routes reach the
// data plane through watches, so the first requests may predate them.
func (c *cluster) expect(t testing.TB, scheme, host, path string, code int, prefix string, extra ...string) response {
	t.Helper()
	return c.expectAt(t, c.lbIP, scheme, host, path, code, prefix, extra...)
}

// expectAt is expect through the address addr.
func (c *cluster) expectAt(t testing.TB, addr, scheme, host, path string, code int, prefix string, extra ...string) response {
	t.Helper()
	var last response
	start := time.Now()
	defer func() {
		t.Logf("%s://%s%s answered %s after %v", scheme, host, path, last, time.Since(start).Round(time.Millisecond))
	}()
	harness.Eventually(t, deadline, fmt.Sprintf("%s://%s%s answers %d %s...", scheme, host, path, code, prefix), func() (bool, string) {
		r, err := c.getAt(addr, scheme, host, path, extra...)
		if err != nil {
			return false, err.Error()
		}
		last = r
		return r.code == code && strings.HasPrefix(r.body, prefix), r.String()
	})
	return last
}

// waitAddress waits for the ingress Service's address from the pool.
func (c *cluster) waitAddress(t testing.TB) {
	t.Helper()
	harness.Eventually(t, deadline, "the ingress Service gets "+c.lbIP, func() (bool, string) {
		s, err := c.kube.CoreV1().Services(ingress.Namespace).Get(context.Background(), ingress.ServiceName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ing := s.Status.LoadBalancer.Ingress
		return len(ing) == 1 && ing[0].IP == c.lbIP, fmt.Sprint(ing)
	})
}
