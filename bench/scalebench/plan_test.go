package main

import (
	"io"
	"strings"
	"testing"
)

func TestMakePlanSplitsLikeClusterloader(t *testing.T) {
	tests := []struct {
		name                 string
		spec                 planSpec
		namespaces           int
		big, medium, small   int
		minCreated, maxTotal int
	}{
		// 3,000 pods per namespace: 3 big (750), 25 medium (750), 300 small (1,500).
		{"full namespace", planSpec{Nodes: 100, PodsPerNode: 30, NodesPerNamespace: 100, Seed: 1}, 1, 3, 25, 300, 3000, 3000},
		{"1,000 nodes", planSpec{Nodes: 1000, PodsPerNode: 30, NodesPerNamespace: 100, Seed: 1}, 10, 30, 250, 3000, 30000, 30000},
		// 500 pods: no big one fits a quarter; 4 medium (120) and 76 small (380).
		{"small run", planSpec{Nodes: 50, PodsPerNode: 10, NodesPerNamespace: 100, Seed: 1}, 1, 0, 4, 76, 500, 500},
		// 150 nodes: a full namespace and one of 50 nodes (1,500 pods: 1 big, 12 medium, 178 small = 1,500).
		{"partial last namespace", planSpec{Nodes: 150, PodsPerNode: 30, NodesPerNamespace: 100, Seed: 1}, 2, 4, 37, 478, 4500, 4500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := makePlan(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Namespaces) != tt.namespaces {
				t.Errorf("namespaces = %d, want %d", len(p.Namespaces), tt.namespaces)
			}
			count := map[int32]int{}
			for _, d := range p.Deployments {
				count[d.Replicas]++
				if d.Scaled < (d.Replicas+1)/2 || d.Scaled > d.Replicas*3/2 {
					t.Errorf("%s/%s: scaled to %d from %d, want within 0.5x-1.5x", d.Namespace, d.Name, d.Scaled, d.Replicas)
				}
			}
			if count[bigReplicas] != tt.big || count[mediumReplicas] != tt.medium || count[smallReplicas] != tt.small {
				t.Errorf("big/medium/small = %d/%d/%d, want %d/%d/%d", count[bigReplicas], count[mediumReplicas], count[smallReplicas], tt.big, tt.medium, tt.small)
			}
			created, _ := p.Pods()
			if created < tt.minCreated || created > tt.maxTotal {
				t.Errorf("created pods = %d, want %d..%d", created, tt.minCreated, tt.maxTotal)
			}
		})
	}
}

func TestMakePlanIsRepeatableAndShuffled(t *testing.T) {
	spec := planSpec{Nodes: 100, PodsPerNode: 30, NodesPerNamespace: 100, Seed: 7}
	a, _ := makePlan(spec)
	b, _ := makePlan(spec)
	for i := range a.Deployments {
		if a.Deployments[i] != b.Deployments[i] {
			t.Fatalf("same seed, different plan at %d: %+v vs %+v", i, a.Deployments[i], b.Deployments[i])
		}
	}
	// Unshuffled, the 3 big ones would lead; interleaved, they do not all.
	leading := 0
	for _, d := range a.Deployments[:3] {
		if d.Replicas == bigReplicas {
			leading++
		}
	}
	if leading == 3 {
		t.Error("the big Deployments lead the creation order: not shuffled")
	}
	_, scaled := a.Pods()
	if created, _ := a.Pods(); scaled == created {
		t.Errorf("scaled pods = created pods = %d: no Deployment was scaled", created)
	}
}

func TestMakePlanRejectsBadScale(t *testing.T) {
	for _, tt := range []struct {
		spec planSpec
		flag string
	}{
		{planSpec{Nodes: 0, PodsPerNode: 30, NodesPerNamespace: 100}, "-nodes"},
		{planSpec{Nodes: 10, PodsPerNode: 0, NodesPerNamespace: 100}, "-pods-per-node"},
		{planSpec{Nodes: 10, PodsPerNode: 30, NodesPerNamespace: 0}, "-nodes-per-namespace"},
	} {
		if _, err := makePlan(tt.spec); err == nil || !strings.Contains(err.Error(), tt.flag) {
			t.Errorf("makePlan(%+v) error = %v, want one naming %s", tt.spec, err, tt.flag)
		}
	}
}

func TestParseSteps(t *testing.T) {
	for v, want := range map[string]int{"create": 1, "create,scale": 2, "create,scale,delete": 3} {
		if got, err := parseSteps(v); err != nil || got != want {
			t.Errorf("parseSteps(%q) = %d, %v; want %d", v, got, err, want)
		}
	}
	for _, v := range []string{"", "scale", "create,delete", "create,scale,delete,create", "delete,scale,create"} {
		if _, err := parseSteps(v); err == nil || !strings.Contains(err.Error(), "-steps") {
			t.Errorf("parseSteps(%q): error %v, want one naming -steps", v, err)
		}
	}
}

func TestClusterCIDRArgs(t *testing.T) {
	for _, c := range []struct {
		nodes int
		extra []string
		want  string
	}{
		{100, nil, ""},
		{256, nil, ""},
		{257, nil, "--cluster-cidr 10.64.0.0/15"},
		{1000, nil, "--cluster-cidr 10.64.0.0/14"},
		{1024, nil, "--cluster-cidr 10.64.0.0/14"},
		{maxNodes, nil, "--cluster-cidr 10.64.0.0/10"},
		{1000, []string{"--cluster-cidr=10.0.0.0/12"}, ""},
		{1000, []string{"--cluster-cidr", "10.0.0.0/12"}, ""},
	} {
		if got := strings.Join(clusterCIDRArgs(c.nodes, c.extra), " "); got != c.want {
			t.Errorf("clusterCIDRArgs(%d, %q) = %q; want %q", c.nodes, c.extra, got, c.want)
		}
	}
	for _, n := range []string{"0", "16385"} {
		if _, err := parseFlags([]string{"-nodes", n}, io.Discard); err == nil || !strings.Contains(err.Error(), "-nodes") {
			t.Errorf("-nodes %s: error %v, want one naming -nodes", n, err)
		}
	}
}

func TestSetKwokPodWorkers(t *testing.T) {
	config := "kind: Stage\nmetadata:\n  name: pod-ready\n---\napiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions:\n  nodeLeaseParallelism: 4\n  podPlayStageParallelism: 4\n"
	out, err := setKwokPodWorkers([]byte(config), 16)
	if err != nil {
		t.Fatal(err)
	}
	got := string(out)
	if !strings.HasPrefix(got, "kind: Stage\nmetadata:\n  name: pod-ready\n---\n") {
		t.Errorf("the stages changed:\n%s", got)
	}
	if !strings.Contains(got, "podPlayStageParallelism: 16") || !strings.Contains(got, "nodeLeaseParallelism: 4") {
		t.Errorf("want the pod workers set and kwok's other defaults kept:\n%s", got)
	}
	if _, err := setKwokPodWorkers([]byte("kind: Stage\n"), 16); err == nil || !strings.Contains(err.Error(), "build-refs.sh kwok") {
		t.Errorf("stages without kwok's configuration: %v, want an error naming build-refs.sh", err)
	}
}
