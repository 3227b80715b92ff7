package ingress

import (
	"cmp"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/e2e/harness"
)

// presentIngresses is how many Ingresses the data plane holds while a
// change is measured (the figure), and changesPerRound how many
// changes one benchmark iteration measures.
const (
	presentIngresses = 1000
	changesPerRound  = 50
)

// BenchmarkIngressChangeToRoute measures, with 1,000 Ingresses present,
// the time from an Ingress change (the create call for a new host) until
// the client, outside the cluster, first gets the backend's answer for
// that host through the ingress address: the API write, the node part's
// watch, the rebuilt table and the request. A poller started in the client
// namespace before the change asks the host in a loop and stamps its first
// 200, so a curl start is the resolution. Run it as root:
//
//	go test -run '^$' -bench IngressChangeToRoute -benchtime 1x ./e2e/ingress/
func BenchmarkIngressChangeToRoute(b *testing.B) {
	c := startClusterWith(b, clusterOptions{poolSize: 1, tinyPort: tinyPort})
	c.apply(b, backend("web", 1))
	c.readyPods(b, "web", 1)
	c.waitAddress(b)

	start := time.Now()
	c.createIngresses(b, "bulk", presentIngresses)
	c.expect(b, "http", hostOf("bulk", presentIngresses-1), "/", 200, "web-")
	b.Logf("%d Ingresses created and the last one served in %v", presentIngresses, time.Since(start).Round(time.Millisecond))

	var took []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := 0; k < changesPerRound; k++ {
			d := c.changeToRoute(b, fmt.Sprintf("change-%d-%d", i, k))
			took = append(took, d)
		}
	}
	b.StopTimer()
	slices.Sort(took)
	b.Logf("change to route over %d changes: min %v, max %v", len(took), took[0].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
	b.ReportMetric(harness.Percentile(took, 50).Seconds()*1000, "change-to-route-p50-ms")
	b.ReportMetric(harness.Percentile(took, 99).Seconds()*1000, "change-to-route-p99-ms")
}

func hostOf(prefix string, i int) string { return fmt.Sprintf("%s-%d.example", prefix, i) }

// webIngress routes host to the web backend's Service.
func webIngress(name, host string) *networkingv1.Ingress {
	prefix := networkingv1.PathTypePrefix
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{
			Host: host,
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/", PathType: &prefix,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
					Name: "web", Port: networkingv1.ServiceBackendPort{Name: "http"}}},
			}}}},
		}}},
	}
}

// createIngresses creates n Ingresses prefix-0 ... for hosts
// prefix-i.example, 16 at a time.
func (c *cluster) createIngresses(t testing.TB, prefix string, n int) {
	t.Helper()
	next := make(chan int)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				name := fmt.Sprintf("%s-%d", prefix, i)
				_, err := c.kube.NetworkingV1().Ingresses("default").Create(context.Background(), webIngress(name, hostOf(prefix, i)), metav1.CreateOptions{})
				if err != nil {
					mu.Lock()
					first = cmp.Or(first, fmt.Errorf("creating Ingress %s: %w", name, err))
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

// changeToRoute creates the Ingress name for host name.example and returns
// the time from just before the create call until the client's poller got
// the backend's 200 for that host.
func (c *cluster) changeToRoute(t testing.TB, name string) time.Duration {
	t.Helper()
	host := name + ".example"
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	script := fmt.Sprintf(`until [ "$(curl -s -o /dev/null -w '%%{http_code}' --max-time 1 --resolve %[1]s:80:%[2]s http://%[1]s/)" = 200 ]; do :; done; date +%%s%%N`, host, c.lbIP)
	poll := exec.CommandContext(ctx, "ip", "netns", "exec", c.client.NS, "sh", "-c", script)
	var out strings.Builder
	poll.Stdout = &out
	if err := poll.Start(); err != nil {
		t.Fatal(err)
	}
	// Let the poller get its first answer (404: no such host yet), so
	// that its start is not counted.
	time.Sleep(200 * time.Millisecond)
	changed := time.Now()
	if _, err := c.kube.NetworkingV1().Ingresses("default").Create(context.Background(), webIngress(name, host), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Ingress %s: %v", name, err)
	}
	if err := poll.Wait(); err != nil {
		t.Fatalf("polling %s: %v (within %v)", host, err, deadline)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(out.String()), 10, 64)
	if err != nil {
		t.Fatalf("the poller printed %q, want the time of its first 200: %v", out.String(), err)
	}
	d := time.Unix(0, ns).Sub(changed)
	if d < 0 {
		t.Fatalf("host %s answered 200 before its Ingress was created (%v)", host, d)
	}
	return d
}
