// Package liveness turns the gossip pool's view of the nodes into the Ready
// condition of their Node objects. It runs on the raft leader only.
//
// A node whose agent is a member of the pool heartbeats through gossip,
// which costs no raft write; Kubernetes would renew a Lease every 10 s per
// node instead. The leader writes only on transitions: Ready (and the
// memory, disk and PID pressure conditions) become Unknown, with upstream's
// reason and message, once the member has been unreachable for the grace
// period; Ready turns back to True when the member is alive again.
//
// Before marking a node down the leader makes sure it is not alone in
// thinking so: the member must have been failed or missing for the whole
// grace period while this server led (a new leader waits a full grace
// period), must not answer a direct probe from the leader, and the other
// servers must answer a cross-check without one of them reaching it. A
// leader change or a leader cut off from some nodes therefore never marks
// healthy nodes down, and so never starts a mass eviction.
package liveness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jonboulle/clockwork"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/keelson/keelson/internal/nodehealth"
	"github.com/keelson/keelson/internal/nodeproof"
	"github.com/keelson/keelson/internal/serfpool"
)

// Pool is what liveness reads from the gossip pool; *serfpool.Pool
// implements it.
type Pool interface {
	// Members lists every member the pool knows, with its status and since
	// when it has had it.
	Members() []serfpool.Member
	// Changes returns a channel closed at the next membership change.
	Changes() <-chan struct{}
	// Probe pings members directly and reports which answered.
	Probe(ctx context.Context, names ...string) map[string]bool
	// CrossCheck asks the other servers to probe members.
	CrossCheck(ctx context.Context, names []string) (map[string][]serfpool.Opinion, int, error)
}

// Config tunes the liveness check.
type Config struct {
	// GracePeriod is how long a member must be unreachable (and this server
	// must have led) before its Node's Ready becomes Unknown. Default 40s.
	GracePeriod time.Duration
	// Interval is how often the Nodes are re-checked without a membership
	// change; grace periods expire between changes. Default 1s.
	Interval time.Duration
	// Clock is the time source; default the real clock.
	Clock clockwork.Clock
	// Logger receives one line per transition and per held decision.
	Logger *slog.Logger

	// afterRound, when set (tests), is called after every round with the
	// time the round ran at.
	afterRound func(time.Time)
}

// DefaultGracePeriod is upstream's node-monitor-grace-period before 1.32.
const DefaultGracePeriod = 40 * time.Second

func (c Config) withDefaults() Config {
	if c.GracePeriod == 0 {
		c.GracePeriod = DefaultGracePeriod
	}
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Run keeps the Ready conditions of gossip-managed Nodes in step with the
// pool until ctx ends. The caller runs it exactly while this server is the
// raft leader: ctx must end when leadership is lost. client acts with the
// server's own (admin) identity.
func Run(ctx context.Context, cfg Config, pool Pool, client kubernetes.Interface) error {
	cfg = cfg.withDefaults()
	if cfg.GracePeriod < 0 || cfg.Interval < 0 {
		return fmt.Errorf("liveness: GracePeriod %v and Interval %v must not be negative", cfg.GracePeriod, cfg.Interval)
	}
	r := &runner{cfg: cfg, log: cfg.Logger.With("component", "node-liveness"), pool: pool, client: client,
		leaderSince: cfg.Clock.Now(), missingSince: map[string]time.Time{}, held: map[string]string{},
		proofs: map[string]proofCheck{}, unproven: map[string]bool{}}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(trimNode))
	r.nodes = factory.Core().V1().Nodes().Lister()
	factory.Core().V1().Nodes().Informer()
	ctx, cancel := context.WithCancel(ctx)
	defer factory.Shutdown() // after cancel: it waits for the informers to stop
	defer cancel()
	factory.Start(ctx.Done())
	for _, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil // ctx ended
		}
	}
	r.log.Info("watching node liveness through gossip", "grace_period", cfg.GracePeriod)
	tick := cfg.Clock.NewTicker(cfg.Interval)
	defer tick.Stop()
	for {
		changed := pool.Changes()
		if err := r.round(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("node liveness round failed; retrying", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.Chan():
		}
	}
}

type runner struct {
	cfg         Config
	log         *slog.Logger
	pool        Pool
	client      kubernetes.Interface
	nodes       corelisters.NodeLister
	leaderSince time.Time
	// missingSince: gossip-managed Nodes absent from the pool, since when.
	missingSince map[string]time.Time
	// proofs caches each node's last proof check (see proof.go);
	// unproven lists, this round, the nodes whose member failed it.
	proofs   map[string]proofCheck
	unproven map[string]bool
	// held: nodes whose mark-down the cross-check held back, and why (each
	// reason is logged once).
	held map[string]string
}

// round reads the Nodes and the pool, and takes every step the plan says.
func (r *runner) round(ctx context.Context) error {
	nodes, err := r.nodes.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("listing nodes from the cache: %w", err)
	}
	now := r.cfg.Clock.Now()
	members := map[string]serfpool.Member{}
	for _, m := range r.pool.Members() {
		members[m.Name] = m
	}
	r.dropUnproven(nodes, members)
	r.trackMissing(nodes, members, now)
	if r.cfg.afterRound != nil {
		defer r.cfg.afterRound(now)
	}
	var errs []error
	var down []string
	for _, s := range plan(planInput{now: now, leaderSince: r.leaderSince, grace: r.cfg.GracePeriod,
		nodes: nodes, members: members, missingSince: r.missingSince}) {
		switch s.kind {
		case stepAnnotate:
			errs = append(errs, r.annotate(ctx, s.node))
		case stepRestore:
			errs = append(errs, r.restore(ctx, s.node))
		case stepMarkDown:
			down = append(down, s.node)
		}
	}
	for name := range r.held {
		if !slices.Contains(down, name) {
			delete(r.held, name) // recovered or gone: a new hold is news again
		}
	}
	if len(down) > 0 {
		errs = append(errs, r.markDown(ctx, down))
	}
	return errors.Join(errs...)
}

// trackMissing records since when gossip-managed Nodes have been absent
// from the pool (never joined since this server started, or reaped), and
// forgets Nodes that are back or gone.
func (r *runner) trackMissing(nodes []*corev1.Node, members map[string]serfpool.Member, now time.Time) {
	seen := map[string]bool{}
	for _, n := range nodes {
		if _, inPool := members[n.Name]; inPool || !nodehealth.IsGossip(n) {
			continue
		}
		seen[n.Name] = true
		if _, ok := r.missingSince[n.Name]; !ok {
			r.missingSince[n.Name] = now
		}
	}
	for name := range r.missingSince {
		if !seen[name] {
			delete(r.missingSince, name)
		}
	}
}

func (r *runner) annotate(ctx context.Context, name string) error {
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, nodehealth.LivenessAnnotation, nodehealth.LivenessGossip)
	if _, err := r.client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("marking node %s gossip-managed: %w", name, err)
	}
	r.log.Info("node's liveness now comes from gossip", "node", name)
	return nil
}

func (r *runner) restore(ctx context.Context, name string) error {
	n, err := r.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading node %s: %w", name, err)
	}
	if !restoreReady(n, metav1.NewTime(r.cfg.Clock.Now())) {
		return nil // the agent got there first
	}
	if _, err := r.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("restoring Ready on node %s: %w", name, err)
	}
	delete(r.held, name)
	r.log.Info("node reachable again through gossip; Ready=True", "node", name)
	return nil
}

// markDown confirms that the named nodes are unreachable and then sets
// their conditions to Unknown. A node any check finds reachable is held
// back and looked at again next round.
func (r *runner) markDown(ctx context.Context, names []string) error {
	fresh := map[string]*corev1.Node{}
	var errs []error
	for _, name := range names {
		n, err := r.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			errs = append(errs, fmt.Errorf("reading node %s: %w", name, err))
		case nodehealth.IsGossip(n) && !nodehealth.AllUnknown(n): // the cache may lag our own last write
			fresh[name] = n
		}
	}
	confirmed := r.confirmDown(ctx, sortedKeys(fresh))
	for _, name := range confirmed {
		n := fresh[name]
		if ctx.Err() != nil {
			break
		}
		if !nodehealth.MarkUnknown(n, metav1.NewTime(r.cfg.Clock.Now())) {
			continue
		}
		if _, err := r.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("marking node %s Ready=Unknown: %w", name, err))
			continue
		}
		delete(r.held, name)
		r.log.Info("node unreachable through gossip for the grace period; Ready=Unknown", "node", name, "grace_period", r.cfg.GracePeriod)
	}
	return errors.Join(errs...)
}

// confirmDown returns the nodes that neither this server's direct probe nor
// any other server can reach. With other servers alive, at least one must
// answer: silence is not agreement.
func (r *runner) confirmDown(ctx context.Context, names []string) []string {
	if len(names) == 0 {
		return nil
	}
	// A member that answers under the name of a node without its proof is
	// not that node: its reachability says nothing.
	var out, probe []string
	for _, name := range names {
		if r.unproven[name] {
			out = append(out, name)
		} else {
			probe = append(probe, name)
		}
	}
	if len(probe) == 0 {
		return out
	}
	reached := r.pool.Probe(ctx, probe...)
	var candidates []string
	for _, name := range probe {
		if reached[name] {
			r.hold(name, "it answers a direct probe from this server")
		} else {
			candidates = append(candidates, name)
		}
	}
	if len(candidates) == 0 {
		return out
	}
	opinions, asked, err := r.pool.CrossCheck(ctx, candidates)
	if err != nil {
		for _, name := range candidates {
			r.hold(name, "the cross-check with the other servers failed: "+err.Error())
		}
		return out
	}
	for _, name := range candidates {
		if why := disagreement(opinions[name], asked); why != "" {
			r.hold(name, why)
			continue
		}
		out = append(out, name)
	}
	return out
}

// disagreement says why the other servers' opinions do not confirm that a
// member is down, or "" when they do.
func disagreement(ops []serfpool.Opinion, asked int) string {
	if asked > 0 && len(ops) == 0 {
		return fmt.Sprintf("none of the %d other servers answered the cross-check", asked)
	}
	for _, o := range ops {
		if o.Reachable {
			return "server " + o.Server + " reaches it"
		}
		if alive(serfpool.Member{Status: o.Status}) {
			return "server " + o.Server + " sees it alive"
		}
	}
	return ""
}

func (r *runner) hold(name, why string) {
	if r.held[name] == why {
		return
	}
	r.held[name] = why
	r.log.Info("not marking node down yet", "node", name, "reason", why)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// trimNode keeps what liveness reads of a Node (name, our annotation,
// conditions), so the leader's cache of a large cluster stays small.
func trimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil // a tombstone
	}
	out := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, CreationTimestamp: n.CreationTimestamp,
	}}
	for _, k := range []string{nodehealth.LivenessAnnotation, nodeproof.RequiredAnnotation, nodeproof.KeyAnnotation} {
		if v, ok := n.Annotations[k]; ok {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[k] = v
		}
	}
	out.Status.Conditions = n.Status.Conditions
	return out, nil
}
