package announcer

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/keelson/keelson/plugins/sdk"
)

// resyncPeriod re-applies the plan with no event, so an address taken off
// an interface by hand, or an interface that came up, is noticed.
const resyncPeriod = 5 * time.Second

// watchMembers keeps the gossip view's alive set and queues a sync on every
// change; without a view (the stream fails at once) it records nil, every
// Ready node, until the view is back.
func (a *announcer) watchMembers(ctx context.Context) {
	for ctx.Err() == nil {
		err := a.env.WatchMembers(ctx, func(ms []sdk.Member) {
			alive := map[string]bool{}
			for _, m := range ms {
				if m.Status == sdk.MemberAlive {
					alive[m.Name] = true
				}
			}
			a.setView(alive)
		})
		if err == nil {
			return
		}
		a.env.Logger.Warn("no gossip member view; deciding from Node conditions alone until it is back", "err", err)
		a.setView(nil)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// setView records the latest alive set and queues a sync.
func (a *announcer) setView(alive map[string]bool) {
	a.mu.Lock()
	a.alive, a.haveView = alive, true
	a.mu.Unlock()
	a.poke()
}

// view is the latest alive set, and whether one arrived yet.
func (a *announcer) view() (map[string]bool, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.alive, a.haveView
}

// reconcile applies the plan for the whole world, the queue's one key.
// Until the first member view arrives it announces nothing: a restarted
// node must not claim IPs from a view that does not know who is alive.
func (a *announcer) reconcile(ctx context.Context, _ struct{}) (sdk.Result, error) {
	alive, ok := a.view()
	if !ok {
		return sdk.Result{}, nil // setView queues the first sync
	}
	if err := a.sync(ctx, alive); err != nil {
		a.env.NotReady("announcing", err)
		return sdk.Result{}, err
	}
	return sdk.Result{RequeueAfter: resyncPeriod}, nil
}

// sync applies one plan.
func (a *announcer) sync(ctx context.Context, alive map[string]bool) error {
	w := World{Alive: alive, NodeSelector: a.cfg.NodeSelector}
	var err error
	if w.Services, err = a.services.List(labels.Everything()); err != nil {
		return err
	}
	if w.Slices, err = a.slices.List(labels.Everything()); err != nil {
		return err
	}
	if w.Nodes, err = a.nodes.List(labels.Everything()); err != nil {
		return err
	}
	plan := Plan(w)
	var mine []netip.Addr
	for _, as := range plan {
		if as.Node == a.env.Node {
			mine = append(mine, as.IP)
		}
	}
	unplaced, err := a.speaker.apply(ctx, mine)
	if err != nil {
		return err
	}
	if hcErr := a.health.set(a.healthPorts(w)); hcErr != nil {
		a.env.NotReady("healthCheckNodePort", hcErr)
	}
	msg := fmt.Sprintf("announcing %d of %d LoadBalancer IPs", len(mine)-len(unplaced), len(plan))
	if len(unplaced) > 0 {
		msg += fmt.Sprintf("; %v not announced: no interface of this node is on their subnet", unplaced)
	}
	a.env.Ready(msg)
	return nil
}

// healthPorts are this node's healthCheckNodePorts and the local ready
// endpoint count of each Service.
func (a *announcer) healthPorts(w World) (map[int32]string, map[string]int) {
	ports, counts := map[int32]string{}, map[string]int{}
	for _, svc := range w.Services {
		if !Announced(svc) || svc.Spec.ExternalTrafficPolicy != v1.ServiceExternalTrafficPolicyLocal || svc.Spec.HealthCheckNodePort == 0 {
			continue
		}
		key := svc.Namespace + "/" + svc.Name
		ports[svc.Spec.HealthCheckNodePort] = key
		counts[key] = LocalEndpoints(w.Slices, key, a.env.Node)
	}
	return ports, counts
}
