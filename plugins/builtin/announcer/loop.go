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

// watchMembers feeds the gossip view's alive set to the loop; without a
// view (the stream fails at once) the loop keeps nil, every Ready node.
func (a *announcer) watchMembers(ctx context.Context) {
	for ctx.Err() == nil {
		err := a.env.WatchMembers(ctx, func(ms []sdk.Member) {
			alive := map[string]bool{}
			for _, m := range ms {
				if m.Status == sdk.MemberAlive {
					alive[m.Name] = true
				}
			}
			select {
			case a.alive <- alive:
			case <-ctx.Done():
			}
		})
		if err == nil {
			return
		}
		a.env.Logger.Warn("no gossip member view; deciding from Node conditions alone until it is back", "err", err)
		select {
		case a.alive <- nil:
		case <-ctx.Done():
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// loop recomputes and applies the plan after every change until ctx ends.
func (a *announcer) loop(ctx context.Context) error {
	defer a.speaker.stop()
	defer a.health.stop()
	var alive map[string]bool
	// Until the first member view arrives, announce nothing: a restarted
	// node must not claim IPs from a view that does not know who is alive.
	haveView := false
	retry := time.NewTicker(5 * time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case alive = <-a.alive:
			haveView = true
		case <-a.kick:
		case <-retry.C:
		}
		if !haveView {
			continue
		}
		if err := a.sync(ctx, alive); err != nil {
			a.env.NotReady("announcing", err)
			continue
		}
	}
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
