package cluster

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keelson/keelson/e2e/harness"
)

// dashboardFile is the Grafana dashboard the repository ships.
var dashboardFile = filepath.Join("..", "..", "deploy", "grafana", "keelson.json")

// workloadOnly are families that exist only once a node has done what
// this cluster does not: pulled an image (its agents import theirs) or
// mounted a claim.
var workloadOnly = map[string]bool{
	"kubelet_image_pull_duration_seconds_bucket": true,
	"kubelet_volume_stats_used_bytes":            true,
	"kubelet_volume_stats_capacity_bytes":        true,
}

var metricName = regexp.MustCompile(`\b(?:keelson|apiserver|kubeproxy|coredns|kubelet|node)_[a-z0-9_]+\b`)

// testDashboard: every metric family deploy/grafana/keelson.json queries is
// served, the nodes' by an agent (its /metrics and /metrics/resource), the
// rest by the servers' /metrics (the leader's carries the plugins').
func (s *serviceScenario) testDashboard(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Type, Title string
			Targets     []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	node := strings.TrimSpace(s.c.kubectl(t).Must(t, "get", "pod", "-n", s.ns, s.client.Name, "-o", "jsonpath={.spec.nodeName}"))
	agent := s.c.kubectl(t).Must(t, "get", "--raw", "/api/v1/nodes/"+node+"/proxy/metrics") +
		s.c.kubectl(t).Must(t, "get", "--raw", "/api/v1/nodes/"+node+"/proxy/metrics/resource")
	var servers strings.Builder
	for _, srv := range s.c.Servers {
		k := harness.Kubectl{Bin: harness.KeelsonBin(t), Kubeconfig: filepath.Join(srv.DataDir(), "admin.kubeconfig")}
		if r := k.RunIn(t, "", "get", "--raw", "/metrics"); r.ExitCode == 0 {
			servers.WriteString(r.Stdout)
		}
	}
	row, checked := "", 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			row = p.Title
			continue
		}
		scrape, from := servers.String(), "the servers' /metrics"
		if strings.HasPrefix(row, "Nodes") {
			scrape, from = agent, "agent "+node+"'s /metrics"
		}
		for _, tg := range p.Targets {
			for _, name := range metricName.FindAllString(tg.Expr, -1) {
				checked++
				if !workloadOnly[name] && !strings.Contains(scrape, "\n"+name+"{") && !strings.Contains(scrape, "\n"+name+" ") {
					t.Errorf("panel %q (%s) queries %s, which %s lacks", p.Title, row, name, from)
				}
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d metric references found in %s", checked, dashboardFile)
	}
}
