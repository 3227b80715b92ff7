package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-iptables/iptables"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/agent/proxy"
	"github.com/keelson/keelson/bench/internal/latency"
)

type programResult struct {
	Mode       string          `json:"mode"`
	Services   int             `json:"services"`
	Endpoints  int             `json:"endpoints_per_service"`
	Rules      int             `json:"rules"`
	Chains     int             `json:"chains"`
	ProgramSec float64         `json:"program_sec"`
	Change     latency.Summary `json:"endpoint_change_ms"`
	Naive      naiveResult     `json:"naive"`
}

type naiveResult struct {
	Applied      int     `json:"applied"` // rules and chains created
	Sec          float64 `json:"sec"`
	Done         bool    `json:"done"`
	Extrapolated bool    `json:"extrapolated"`
	RulesPerSec  float64 `json:"rules_per_sec"`
	EstimatedSec float64 `json:"estimated_sec"`
}

// cluster returns n services (cluster IPs from 10.96.0.0/12) with e ready
// endpoints each, on two nodes.
func cluster(n, e int) ([]*v1.Service, []*discovery.EndpointSlice) {
	var svcs []*v1.Service
	var slices []*discovery.EndpointSlice
	for i := range n {
		name := fmt.Sprintf("svc-%05d", i)
		ip := netip.AddrFrom4([4]byte{10, 96 + byte(i>>16), byte(i >> 8), byte(i)})
		svcs = append(svcs, &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name},
			Spec: v1.ServiceSpec{ClusterIP: ip.String(), ClusterIPs: []string{ip.String()},
				Ports: []v1.ServicePort{{Protocol: v1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}}}})
		s := &discovery.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name + "-1",
			Labels: map[string]string{discovery.LabelServiceName: name}},
			AddressType: discovery.AddressTypeIPv4,
			Ports:       []discovery.EndpointPort{{Name: ptr.To(""), Protocol: ptr.To(v1.ProtocolTCP), Port: ptr.To[int32](8080)}}}
		for j := range e {
			s.Endpoints = append(s.Endpoints, endpoint(i, j))
		}
		slices = append(slices, s)
	}
	return svcs, slices
}

func endpoint(i, j int) discovery.Endpoint {
	k := i*16 + j
	ip := netip.AddrFrom4([4]byte{10, 128 + byte(k>>16), byte(k >> 8), byte(k)})
	node := "bench-node"
	if j%2 == 1 {
		node = "other-node"
	}
	return discovery.Endpoint{Addresses: []string{ip.String()}, NodeName: ptr.To(node), Conditions: discovery.EndpointConditions{Ready: ptr.To(true)}}
}

// benchProgram runs a proxier over n services, times the first full sync
// and then `changes` endpoint replacements.
func benchProgram(ctx context.Context, mode string, n, e, changes int) (programResult, error) {
	res := programResult{Mode: mode, Services: n, Endpoints: e}
	svcs, slices := cluster(n, e)
	client, err := fakeAPI(ctx, svcs, slices)
	if err != nil {
		return res, err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	svcInf, sliceInf := factory.Core().V1().Services().Informer(), factory.Discovery().V1().EndpointSlices().Informer()
	syncs := make(chan proxy.SyncStats, 100)
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := proxy.New(proxy.Config{Mode: mode, NodeName: "bench-node", ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.128.0.0/9")},
		SyncPeriod: time.Hour, OnSync: func(s proxy.SyncStats) { syncs <- s }}, svcInf, sliceInf, quiet)
	if err != nil {
		return res, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	factory.Start(runCtx.Done())
	if !cache.WaitForCacheSync(runCtx.Done(), svcInf.HasSynced, sliceInf.HasSynced) {
		return res, fmt.Errorf("caches did not sync")
	}
	done := make(chan struct{})
	go func() { _ = p.Run(runCtx); close(done) }()
	first := <-syncs
	res.ProgramSec, res.Rules, res.Chains = first.Duration.Seconds(), first.Rules, first.Chains

	var lat []time.Duration
	for c := range changes {
		time.Sleep(1200 * time.Millisecond) // past the minimum sync interval: the change waits for nothing
		s := slices[(c*7919)%n].DeepCopy()
		s.Endpoints[0] = endpoint(n+c, 0)
		t0 := time.Now()
		if _, err := client.DiscoveryV1().EndpointSlices(s.Namespace).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			return res, err
		}
		for st := range syncs {
			if st.Start.After(t0) {
				lat = append(lat, st.Start.Add(st.Duration).Sub(t0))
				break
			}
		}
	}
	res.Change = latency.Summarize(lat)
	cancel()
	<-done
	return res, proxy.Cleanup(ctx, []v1.IPFamily{v1.IPv4Protocol})
}

// benchNaive installs the same rules with one iptables command per chain
// and per rule, until done or out of budget.
func benchNaive(ctx context.Context, n, e int, budget time.Duration) (naiveResult, error) {
	var res naiveResult
	svcs, slices := cluster(n, e)
	ports, _ := proxy.Snapshot(svcs, slices, "bench-node", v1.IPv4Protocol)
	// The rules the proxier writes at this size: without comments above
	// proxy.LargeClusterEndpoints endpoints.
	rs := proxy.Rules(ports, proxy.RulesConfig{Family: v1.IPv4Protocol, ClusterCIDR: netip.MustParsePrefix("10.128.0.0/9"),
		MasqueradeMark: 0x4000, NoComments: n*e > proxy.LargeClusterEndpoints})
	ipt, err := iptables.New()
	if err != nil {
		return res, err
	}
	total := 0
	for _, table := range rs.Tables() {
		for _, c := range rs.Chains(table) {
			total += 1 + c.Len()
		}
	}
	start := time.Now()
	deadline := start.Add(budget)
	defer func() { _ = proxy.Cleanup(ctx, []v1.IPFamily{v1.IPv4Protocol}) }()
	for _, table := range rs.Tables() {
		for _, c := range rs.Chains(table) {
			if time.Now().After(deadline) {
				return finishNaive(res, start, total), nil
			}
			if err := ipt.NewChain(table, c.Name); err != nil {
				return res, fmt.Errorf("naive: creating %s: %w", c.Name, err)
			}
			res.Applied++
		}
	}
	for _, table := range rs.Tables() {
		for _, c := range rs.Chains(table) {
			for _, line := range c.Lines() {
				if time.Now().After(deadline) {
					return finishNaive(res, start, total), nil
				}
				args := strings.Fields(line)[2:] // no quoted comments at these sizes
				if err := ipt.Append(table, c.Name, args...); err != nil {
					return res, fmt.Errorf("naive: %s: %w", line, err)
				}
				res.Applied++
			}
		}
	}
	res.Done = true
	return finishNaive(res, start, total), nil
}

func finishNaive(res naiveResult, start time.Time, total int) naiveResult {
	res.Sec = time.Since(start).Seconds()
	res.RulesPerSec = latency.Rate(res.Applied, time.Since(start))
	if res.RulesPerSec > 0 {
		res.EstimatedSec = float64(total) / res.RulesPerSec
	}
	return res
}

// fakeAPI is a fake API server holding services and slices. They are
// added to its store directly: creating them one call at a time costs the
// fake a REST mapper per call (minutes for 20,000 objects), none of
// which is the node's share.
func fakeAPI(_ context.Context, svcs []*v1.Service, slices []*discovery.EndpointSlice) (*fake.Clientset, error) {
	objs := make([]runtime.Object, 0, len(svcs)+len(slices))
	for _, s := range svcs {
		objs = append(objs, s)
	}
	for _, s := range slices {
		objs = append(objs, s)
	}
	return fake.NewClientset(objs...), nil
}
