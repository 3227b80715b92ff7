// Command nodebench measures what node heartbeats cost the replicated
// store: raft log entries per minute for idle nodes whose liveness comes
// from the gossip pool (the agent is a serf member; the raft leader writes
// only on transitions) against the same nodes renewing a Lease in
// kube-node-lease every 10 s (the Kubernetes way, which keelson keeps for
// nodes outside the pool).
//
// Each approach gets its own keelson server (built-in plugins on, as in
// production). A window is measured first on the idle server (the
// control plane's own background writes), then again with the nodes; the
// difference is what the nodes cost. Entries are counted as the raft
// applied index moves, read through the server's admin socket.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/keelson/keelson/agent/gossip"
	"github.com/keelson/keelson/bench/internal/keelsonproc"
	"github.com/keelson/keelson/bench/internal/procstat"
	"github.com/keelson/keelson/core/ops"
	"github.com/keelson/keelson/internal/nodehealth"
	"github.com/keelson/keelson/internal/serfpool"
)

func main() {
	keelsonBin := flag.String("keelson-bin", "bin/keelson", "keelson binary")
	nodes := flag.Int("nodes", 100, "idle nodes")
	window := flag.Duration("window", time.Minute, "measurement window")
	renew := flag.Duration("lease-renew", 10*time.Second, "Lease renewal interval (kubelet's default: 10s)")
	workDir := flag.String("work-dir", os.TempDir(), "where temp dirs go")
	flag.Parse()
	b := bench{bin: *keelsonBin, workDir: *workDir, nodes: *nodes, window: *window, renew: *renew}
	if err := b.run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "nodebench:", err)
		os.Exit(1)
	}
}

type bench struct {
	bin, workDir string
	nodes        int
	window       time.Duration
	renew        time.Duration
}

// result is one approach's figures, per minute.
type result struct {
	label      string
	idle, busy float64 // raft entries
	writes     float64 // Node and Lease writes seen by a watch, with the nodes
}

func (b bench) run(ctx context.Context) error {
	fmt.Printf("nodebench: %d idle nodes, %s windows; load %s\n\n", b.nodes, b.window, procstat.LoadAvg())
	var results []result
	for _, approach := range []struct {
		label string
		setup func(context.Context, *keelsonproc.Server, kubernetes.Interface) (stop func(), err error)
	}{
		{"gossip (serf members)", b.gossipNodes},
		{fmt.Sprintf("Lease renewed every %s", b.renew), b.leaseNodes},
	} {
		r, err := b.measure(ctx, approach.label, approach.setup)
		if err != nil {
			return fmt.Errorf("%s: %w", approach.label, err)
		}
		results = append(results, r)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "raft entries per minute\tidle server\twith %d nodes\tnodes' share\tper node\tNode+Lease writes\n", b.nodes)
	for _, r := range results {
		share := max(r.busy-r.idle, 0)
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.2f\t%.1f\n", r.label, r.idle, r.busy, share, share/float64(b.nodes), r.writes)
	}
	return tw.Flush()
}

// measure starts a server, measures it idle, adds the nodes with setup,
// and measures again.
func (b bench) measure(ctx context.Context, label string, setup func(context.Context, *keelsonproc.Server, kubernetes.Interface) (func(), error)) (result, error) {
	srv, err := keelsonproc.Start(ctx, b.bin, b.workDir, 3*time.Minute)
	if err != nil {
		return result{}, err
	}
	defer srv.Stop()
	cs, err := kubernetes.NewForConfig(srv.REST)
	if err != nil {
		return result{}, err
	}
	r := result{label: label}
	// Let start-up writes (bootstrap objects, plugin registrations) settle.
	time.Sleep(15 * time.Second)
	if r.idle, err = b.entriesPerMinute(ctx, srv); err != nil {
		return r, err
	}
	stop, err := setup(ctx, srv, cs)
	if err != nil {
		return r, err
	}
	defer stop()
	counted, err := countWrites(ctx, cs)
	if err != nil {
		return r, err
	}
	start := time.Now()
	if r.busy, err = b.entriesPerMinute(ctx, srv); err != nil {
		return r, err
	}
	r.writes = float64(counted()) / time.Since(start).Minutes()
	fmt.Printf("  %s: idle %.1f, with nodes %.1f raft entries/min; %.1f Node and Lease writes/min\n", label, r.idle, r.busy, r.writes)
	return r, nil
}

// countWrites watches Nodes and node Leases from now on; the returned
// function stops and says how many changes it saw.
func countWrites(ctx context.Context, cs kubernetes.Interface) (func() int, error) {
	ctx, cancel := context.WithCancel(ctx)
	// Watch from a list's version: a watch without one starts with an
	// ADDED event for every existing object.
	nl, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		cancel()
		return nil, err
	}
	nodes, err := cs.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{ResourceVersion: nl.ResourceVersion})
	if err != nil {
		cancel()
		return nil, err
	}
	ll, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).List(ctx, metav1.ListOptions{})
	if err != nil {
		cancel()
		return nil, err
	}
	leases, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Watch(ctx, metav1.ListOptions{ResourceVersion: ll.ResourceVersion})
	if err != nil {
		cancel()
		return nil, err
	}
	var mu sync.Mutex
	n := 0
	var wg sync.WaitGroup
	for _, w := range []watch.Interface{nodes, leases} {
		wg.Go(func() {
			for ev := range w.ResultChan() {
				if ev.Type == watch.Modified || ev.Type == watch.Added || ev.Type == watch.Deleted {
					mu.Lock()
					n++
					mu.Unlock()
				}
			}
		})
	}
	return func() int {
		cancel()
		nodes.Stop()
		leases.Stop()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return n
	}, nil
}

// entriesPerMinute counts raft entries applied during one window.
func (b bench) entriesPerMinute(ctx context.Context, srv *keelsonproc.Server) (float64, error) {
	first, err := appliedIndex(ctx, srv)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(b.window):
	}
	last, err := appliedIndex(ctx, srv)
	if err != nil {
		return 0, err
	}
	return float64(last-first) / time.Since(start).Minutes(), nil
}

func appliedIndex(ctx context.Context, srv *keelsonproc.Server) (uint64, error) {
	c, err := ops.Dial(srv.DataDir)
	if err != nil {
		return 0, fmt.Errorf("admin socket: %w", err)
	}
	defer c.Close()
	p, err := c.Peers(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the raft applied index: %w", err)
	}
	return p.AppliedIndex, nil
}

// registerNodes creates the Nodes and posts their Ready status, as agents
// do when they start.
func (b bench) registerNodes(ctx context.Context, cs kubernetes.Interface, prefix string) ([]string, error) {
	var names []string
	for i := range b.nodes {
		name := fmt.Sprintf("%s-%03d", prefix, i)
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("creating node %s: %w", name, err)
		}
		// nodeipam may set the pod CIDRs in between: retry on conflict.
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			now := metav1.Now()
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
				Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now}}
			_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("posting node %s status: %w", name, err)
		}
		names = append(names, name)
	}
	return names, nil
}

// gossipNodes makes every node a member of the server's gossip pool and
// waits until the leader has taken their liveness over.
func (b bench) gossipNodes(ctx context.Context, srv *keelsonproc.Server, cs kubernetes.Interface) (func(), error) {
	token, err := os.ReadFile(srv.DataDir + "/token")
	if err != nil {
		return nil, fmt.Errorf("reading the cluster secret: %w", err)
	}
	key, err := serfpool.GossipKey(strings.TrimSpace(string(token)))
	if err != nil {
		return nil, err
	}
	names, err := b.registerNodes(ctx, cs, "gossip")
	if err != nil {
		return nil, err
	}
	var members []*gossip.Member
	stop := func() {
		for _, m := range members {
			_ = m.Close()
		}
	}
	for _, name := range names {
		m, err := gossip.Join(ctx, gossip.Config{NodeName: name, GossipKey: key,
			Servers: []string{srv.SerfAddr}, BindAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			stop()
			return nil, err
		}
		members = append(members, m)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			stop()
			return nil, err
		}
		marked := 0
		for i := range list.Items {
			if nodehealth.IsGossip(&list.Items[i]) {
				marked++
			}
		}
		if marked == len(names) {
			break
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("only %d of %d nodes marked gossip-managed after 3 minutes", marked, len(names))
		}
		time.Sleep(time.Second)
	}
	time.Sleep(5 * time.Second) // the annotations' and pod-CIDR writes land
	return stop, nil
}

// leaseNodes renews one Lease per node every b.renew, spread evenly, as
// kubelets do.
func (b bench) leaseNodes(ctx context.Context, srv *keelsonproc.Server, cs kubernetes.Interface) (func(), error) {
	names, err := b.registerNodes(ctx, cs, "lease")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var renewErr error
	for i, name := range names {
		offset := b.renew * time.Duration(i) / time.Duration(len(names))
		wg.Go(func() {
			if err := kubeletLease(ctx, cs, name, offset, b.renew); err != nil && !errors.Is(err, context.Canceled) {
				mu.Lock()
				renewErr = errors.Join(renewErr, err)
				mu.Unlock()
			}
		})
	}
	time.Sleep(b.renew + 5*time.Second) // every Lease exists and renews
	mu.Lock()
	defer mu.Unlock()
	if renewErr != nil {
		cancel()
		wg.Wait()
		return nil, renewErr
	}
	return func() { cancel(); wg.Wait() }, nil
}

// kubeletLease creates the node's Lease and renews it every interval.
func kubeletLease(ctx context.Context, cs kubernetes.Interface, name string, offset, interval time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(offset):
	}
	leases := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	secs := int32(40)
	l, err := leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &name, LeaseDurationSeconds: &secs, RenewTime: &now}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating the Lease of %s: %w", name, err)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		now := metav1.NewMicroTime(time.Now())
		l.Spec.RenewTime = &now
		if l, err = leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("renewing the Lease of %s: %w", name, err)
		}
	}
}
