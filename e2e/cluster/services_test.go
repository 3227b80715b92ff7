package cluster

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/e2e/nodeagent"
)

// myNginx is the seed's my-nginx Deployment ("Connecting Applications with
// Services") with busybox httpd for nginx. Each pod answers
// /cgi-bin/who with its name and the address the request came from, so a
// test sees which pod served it and whether the client's address arrived
// unchanged. A topology spread constraint puts the two pods on different
// nodes, which the walkthrough's output shows.
const myNginx = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-nginx
spec:
  selector:
    matchLabels:
      run: my-nginx
  replicas: 2
  template:
    metadata:
      labels:
        run: my-nginx
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        labelSelector:
          matchLabels:
            run: my-nginx
      containers:
      - name: my-nginx
        image: ` + nodeagent.BusyboxImage + `
        command:
        - sh
        - -c
        - |
          mkdir -p /www/cgi-bin
          cat > /www/cgi-bin/who <<'EOF'
          #!/bin/sh
          echo "Content-Type: text/plain"
          echo
          echo "$(hostname) $REMOTE_ADDR"
          EOF
          chmod +x /www/cgi-bin/who
          exec httpd -f -p 80 -h /www
        ports:
        - containerPort: 80
        readinessProbe:
          tcpSocket: {port: 80}
          periodSeconds: 1
`

// client is the pod the walkthrough runs wget and nslookup in.
const client = `apiVersion: v1
kind: Pod
metadata:
  name: client
  labels: {app: client}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: client
    image: ` + nodeagent.BusyboxImage + `
    command: [sleep, "3600"]
`

// The seed's default-deny ingress policy, and one letting pods labelled
// access=true reach my-nginx's port.
const (
	defaultDeny = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny
spec:
  podSelector: {}
  policyTypes:
  - Ingress
`
	allowAccess = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: access-nginx
spec:
  podSelector:
    matchLabels:
      run: my-nginx
  ingress:
  - from:
    - podSelector:
        matchLabels:
          access: "true"
    ports:
    - protocol: TCP
      port: 80
`
)

// serviceScenario is issue 9: the seed's my-nginx walkthrough across two
// real nodes. It runs in the default namespace, as the seed does.
type serviceScenario struct {
	c         *testCluster
	ns        string
	clusterIP string
	client    v1.Pod
}

// nginxPods waits for the two my-nginx pods, one running on each node.
func (s *serviceScenario) nginxPods(t *testing.T) []v1.Pod {
	t.Helper()
	pods := s.c.waitPods(t, s.ns, "run=my-nginx", "2 running, one per node", func(pods []v1.Pod) bool {
		per := byNode(pods)
		return len(pods) == 2 && per["a1"] == 1 && per["a2"] == 1
	})
	return pods
}

// testExpose: the Deployment's pods run on both nodes; `kubectl expose`
// makes the Service, and `kubectl get ep` lists both pods.
// testProxyMode checks that the agents' proxies run in the mode the
// harness asked for (KEELSON_PROXY_MODE; nftables, the default on this
// kernel, when unset), so that a CI run in either mode tests that mode.
func (s *serviceScenario) testProxyMode(t *testing.T) {
	want := cmpOr(os.Getenv(nodeagent.ProxyModeEnv), "nftables")
	for name, a := range s.c.agents {
		log, err := os.ReadFile(a.LogPath())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(log), "proxy started") || !strings.Contains(string(log), "mode="+want) {
			t.Errorf("agent %s: no \"proxy started ... mode=%s\" in its log", name, want)
		}
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (s *serviceScenario) testExpose(t *testing.T) {
	s.ns = "default"
	k := s.c.kubectl(t)
	k.MustIn(t, myNginx, "apply", "-n", s.ns, "-f", "-")
	k.MustIn(t, client, "apply", "-n", s.ns, "-f", "-")
	pods := s.nginxPods(t)
	if out := k.Must(t, "expose", "-n", s.ns, "deployment/my-nginx"); !strings.Contains(out, "service/my-nginx exposed") {
		t.Errorf("kubectl expose printed %q", out)
	}
	s.clusterIP = strings.TrimSpace(k.Must(t, "get", "svc", "-n", s.ns, "my-nginx", "-o", "jsonpath={.spec.clusterIP}"))
	if net.ParseIP(s.clusterIP) == nil {
		t.Fatalf("my-nginx has no cluster IP: %q", s.clusterIP)
	}
	want := []string{pods[0].Status.PodIP + ":80", pods[1].Status.PodIP + ":80"}
	eventually(t, "kubectl get ep my-nginx lists both pods", func() (bool, string) {
		out := k.Must(t, "get", "ep", "-n", s.ns, "my-nginx")
		return strings.Contains(out, want[0]) && strings.Contains(out, want[1]), out
	})
	s.client = s.c.waitPods(t, s.ns, "app=client", "the client running", func(pods []v1.Pod) bool {
		return len(pods) == 1 && running(&pods[0])
	})[0]
}

// testPodsWithoutNAT: the client reaches each my-nginx pod by its address,
// the one on the other node too, and the pod sees the client's own
// address: no NAT between pods.
func (s *serviceScenario) testPodsWithoutNAT(t *testing.T) {
	for _, p := range s.nginxPods(t) {
		body := s.fetch(t, "http://"+p.Status.PodIP+"/cgi-bin/who")
		if pod, from := who(body); pod != p.Name || from != s.client.Status.PodIP {
			t.Errorf("pod %s on %s answered %q; want its name and the address of the client (on %s) %s",
				p.Name, p.Spec.NodeName, body, s.client.Spec.NodeName, s.client.Status.PodIP)
		}
	}
}

// testClusterIP: requests to the cluster IP reach both pods, each seeing
// the client's address.
func (s *serviceScenario) testClusterIP(t *testing.T) {
	pods := s.nginxPods(t)
	seen := map[string]bool{}
	eventually(t, "both pods answer through the cluster IP "+s.clusterIP, func() (bool, string) {
		for _, body := range s.fetchN(t, "http://"+s.clusterIP+"/cgi-bin/who", 10) {
			pod, from := who(body)
			if from != s.client.Status.PodIP {
				t.Fatalf("answer %q through the cluster IP: want a pod name and the client's address %s", body, s.client.Status.PodIP)
			}
			seen[pod] = true
		}
		return seen[pods[0].Name] && seen[pods[1].Name], fmt.Sprintf("answered by %v", seen)
	})
}

// testDNS: the service's name resolves through the cluster DNS to its
// cluster IP, and the service is fetched by its full name and by its
// short name (the pod's search path).
func (s *serviceScenario) testDNS(t *testing.T) {
	fqdn := "my-nginx." + s.ns + ".svc.cluster.local"
	out, err := s.exec(t, "nslookup", fqdn)
	if err != nil || !strings.Contains(out, s.clusterIP) {
		t.Errorf("nslookup %s: %v\n%s\nwant %s", fqdn, err, out, s.clusterIP)
	}
	for _, name := range []string{fqdn, "my-nginx"} {
		if body := s.fetch(t, "http://"+name+"/cgi-bin/who"); !strings.HasPrefix(body, "my-nginx-") {
			t.Errorf("fetching http://%s/: %q", name, body)
		}
	}
	// The client's node answered those queries; its agent counts them
	// under CoreDNS's names, and its proxy's syncs under kube-proxy's.
	node := strings.TrimSpace(s.c.kubectl(t).Must(t, "get", "pod", "-n", s.ns, s.client.Name, "-o", "jsonpath={.spec.nodeName}"))
	metrics := s.c.kubectl(t).Must(t, "get", "--raw", "/api/v1/nodes/"+node+"/proxy/metrics")
	for _, want := range []string{`coredns_dns_requests_total{family="1",proto="udp"`, `coredns_dns_responses_total{plugin="kubernetes",rcode="NOERROR"`,
		"kubeproxy_sync_proxy_rules_duration_seconds_count", "kubeproxy_sync_proxy_rules_last_timestamp_seconds"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("node %s's /metrics lacks %s", node, want)
		}
	}
}

// testEnvironment: pods started after the Service have its variables, as
// the walkthrough shows after scaling to 0 and back to 2 (busybox has env
// where the walkthrough runs printenv).
func (s *serviceScenario) testEnvironment(t *testing.T) {
	k := s.c.kubectl(t)
	old := s.nginxPods(t)
	if env := k.Must(t, "exec", "-n", s.ns, old[0].Name, "--", "env"); strings.Contains(env, "MY_NGINX_SERVICE_HOST") {
		t.Errorf("a pod started before the Service has its variables:\n%s", env)
	}
	k.Must(t, "scale", "-n", s.ns, "deployment", "my-nginx", "--replicas=0")
	s.c.waitPods(t, s.ns, "run=my-nginx", "all gone", func(pods []v1.Pod) bool { return len(pods) == 0 })
	k.Must(t, "scale", "-n", s.ns, "deployment", "my-nginx", "--replicas=2")
	for _, p := range s.nginxPods(t) {
		env := k.Must(t, "exec", "-n", s.ns, p.Name, "--", "env")
		for _, want := range []string{"MY_NGINX_SERVICE_HOST=" + s.clusterIP, "MY_NGINX_SERVICE_PORT=80", "KUBERNETES_SERVICE_HOST="} {
			if !strings.Contains(env, want) {
				t.Errorf("pod %s lacks %s in its environment:\n%s", p.Name, want, env)
			}
		}
	}
}

// testNodePort: a NodePort service answers on every node's address, from
// the test process outside the cluster, whichever node the pod is on.
func (s *serviceScenario) testNodePort(t *testing.T) {
	k := s.c.kubectl(t)
	k.Must(t, "expose", "-n", s.ns, "deployment/my-nginx", "--name", "my-nginx-np", "--type", "NodePort")
	port := strings.TrimSpace(k.Must(t, "get", "svc", "-n", s.ns, "my-nginx-np", "-o", "jsonpath={.spec.ports[0].nodePort}"))
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	for _, node := range agentNames {
		url := "http://" + net.JoinHostPort(s.c.Net.Host(node).IP, port) + "/cgi-bin/who"
		eventually(t, "node port "+url, func() (bool, string) {
			resp, err := hc.Get(url)
			if err != nil {
				return false, err.Error()
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode == http.StatusOK && strings.HasPrefix(string(b), "my-nginx-"), fmt.Sprintf("%s: %s", resp.Status, b)
		})
	}
}

// testHeadless: a headless service's name resolves to the pods' own
// addresses.
func (s *serviceScenario) testHeadless(t *testing.T) {
	k := s.c.kubectl(t)
	k.Must(t, "expose", "-n", s.ns, "deployment/my-nginx", "--name", "my-nginx-headless", "--cluster-ip", "None")
	pods := s.nginxPods(t)
	name := "my-nginx-headless." + s.ns + ".svc.cluster.local"
	eventually(t, name+" resolves to both pods", func() (bool, string) {
		out, err := s.exec(t, "nslookup", name)
		return err == nil && strings.Contains(out, pods[0].Status.PodIP) && strings.Contains(out, pods[1].Status.PodIP), fmt.Sprint(out, err)
	})
}

// testSessionAffinity: with sessionAffinity ClientIP, one client keeps
// reaching the same pod.
func (s *serviceScenario) testSessionAffinity(t *testing.T) {
	k := s.c.kubectl(t)
	k.Must(t, "expose", "-n", s.ns, "deployment/my-nginx", "--name", "my-nginx-sticky", "--session-affinity", "ClientIP")
	ip := strings.TrimSpace(k.Must(t, "get", "svc", "-n", s.ns, "my-nginx-sticky", "-o", "jsonpath={.spec.clusterIP}"))
	url := "http://" + ip + "/cgi-bin/who"
	first := s.fetch(t, url)
	for _, body := range s.fetchN(t, url, 20) {
		if body != first {
			t.Fatalf("answer %q after %q: the client moved to another pod", body, first)
		}
	}
}

// testRemovedEndpoint: scaled down to one pod, the Endpoints list it alone
// and the cluster IP sends nothing to the pod that is gone.
func (s *serviceScenario) testRemovedEndpoint(t *testing.T) {
	k := s.c.kubectl(t)
	k.Must(t, "scale", "-n", s.ns, "deployment", "my-nginx", "--replicas=1")
	left := s.c.waitPods(t, s.ns, "run=my-nginx", "one pod left", func(pods []v1.Pod) bool {
		return len(pods) == 1 && running(&pods[0])
	})[0]
	eventually(t, "only "+left.Name+" answers through the cluster IP", func() (bool, string) {
		bodies := s.fetchN(t, "http://"+s.clusterIP+"/cgi-bin/who", 10)
		for _, b := range bodies {
			if !strings.HasPrefix(b, left.Name+" ") {
				return false, fmt.Sprintf("answers %q", bodies)
			}
		}
		return true, ""
	})
}

// testNetworkPolicy: the seed's default-deny policy blocks the client;
// an allow policy for pods labelled access=true lets it through once it
// carries the label. The enforcer runs in the proxy's mode.
func (s *serviceScenario) testNetworkPolicy(t *testing.T) {
	want := cmpOr(os.Getenv(nodeagent.ProxyModeEnv), "nftables")
	for name, a := range s.c.agents {
		// The enforcer starts once the proxy has synced and its caches
		// have: a moment after the agent.
		eventually(t, "agent "+name+" logs \"network policy enforcement started ... mode="+want+"\"", func() (bool, string) {
			log, err := os.ReadFile(a.LogPath())
			if err != nil {
				return false, err.Error()
			}
			var seen []string
			for _, line := range strings.Split(string(log), "\n") {
				if strings.Contains(line, "network policy enforcement started") {
					if strings.Contains(line, "mode="+want) {
						return true, ""
					}
					seen = append(seen, line)
				}
			}
			return false, fmt.Sprintf("start lines: %q", seen)
		})
	}
	k := s.c.kubectl(t)
	url := "http://" + s.clusterIP + "/cgi-bin/who"
	k.MustIn(t, defaultDeny, "apply", "-n", s.ns, "-f", "-")
	k.MustIn(t, allowAccess, "apply", "-n", s.ns, "-f", "-")
	defer k.RunIn(t, "", "delete", "-n", s.ns, "networkpolicy", "default-deny", "access-nginx")
	eventually(t, "default-deny blocks the client", func() (bool, string) {
		body, err := s.tryFetch(t, url)
		return err != nil, fmt.Sprintf("fetched %q", body)
	})
	k.Must(t, "label", "-n", s.ns, "pod", "client", "access=true")
	eventually(t, "the allow policy lets the labelled client in", func() (bool, string) {
		body, err := s.tryFetch(t, url)
		return err == nil && strings.HasPrefix(body, "my-nginx-"), fmt.Sprint(body, err)
	})
}

// cleanup removes the walkthrough's objects, so the node scenarios start
// from idle nodes.
func (s *serviceScenario) cleanup(t *testing.T) {
	k := s.c.kubectl(t)
	for _, args := range [][]string{
		{"delete", "-n", "default", "deployment/my-nginx", "statefulset/web", "pod/client", "--wait=false", "--ignore-not-found"},
		{"delete", "-n", "default", "svc", "my-nginx", "my-nginx-np", "my-nginx-headless", "my-nginx-sticky", "web", "--ignore-not-found"},
	} {
		if r := k.RunIn(t, "", args...); r.ExitCode != 0 {
			t.Logf("cleaning up after the walkthrough: %s", r)
		}
	}
}

// who splits a /cgi-bin/who answer into the pod that served it and the
// client address it saw (httpd reports IPv4 clients as [::ffff:a.b.c.d]).
func who(body string) (pod, from string) {
	f := strings.Fields(body)
	if len(f) != 2 {
		return "", ""
	}
	addr, err := netip.ParseAddr(strings.Trim(f[1], "[]"))
	if err != nil {
		return f[0], f[1]
	}
	return f[0], addr.Unmap().String()
}

// exec runs a command in the client pod.
func (s *serviceScenario) exec(t *testing.T, cmd ...string) (string, error) {
	t.Helper()
	r := s.c.kubectl(t).RunIn(t, "", append([]string{"exec", "-n", s.ns, s.client.Name, "--"}, cmd...)...)
	if r.ExitCode != 0 {
		return r.Stdout, fmt.Errorf("%s: exit %d: %s", strings.Join(cmd, " "), r.ExitCode, strings.TrimSpace(r.Stderr))
	}
	return r.Stdout, nil
}

// tryFetch GETs url from the client pod (busybox wget, bounded by
// timeout: its -T option crashes this busybox).
func (s *serviceScenario) tryFetch(t *testing.T, url string) (string, error) {
	t.Helper()
	out, err := s.exec(t, "timeout", "5", "wget", "-q", "-O", "-", url)
	return strings.TrimSpace(out), err
}

// fetch is tryFetch retried until it succeeds: rules and DNS records
// reach every node a moment after the API objects change.
func (s *serviceScenario) fetch(t *testing.T, url string) string {
	t.Helper()
	var body string
	eventually(t, "fetching "+url+" from the client pod", func() (bool, string) {
		var err error
		body, err = s.tryFetch(t, url)
		return err == nil, fmt.Sprint(err)
	})
	return body
}

// fetchN GETs url n times from the client pod in one exec, one answer per
// line ("FAIL" for a failed request); it fails the test if any failed.
func (s *serviceScenario) fetchN(t *testing.T, url string, n int) []string {
	t.Helper()
	script := fmt.Sprintf(`for i in $(seq %d); do timeout 5 wget -q -O - %s || echo FAIL; done`, n, url)
	out, err := s.exec(t, "sh", "-c", script)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || slices.Contains(lines, "FAIL") || len(lines) != n {
		t.Fatalf("%d requests to %s from the client pod: %v\n%s", n, url, err, out)
	}
	return lines
}
