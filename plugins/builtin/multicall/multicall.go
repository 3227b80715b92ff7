// Package multicall is what the keelson-plugins binary serves: every
// built-in plugin but those in ServedByKeelson, which the keelson binary
// serves (package builtin lists all of them). Every process of the
// binary initialises every package it links, so a library only one plugin
// needs is paid for by all of them; the test of cmd/keelson-plugins keeps
// the heavy ones out.
package multicall

import (
	"fmt"
	"slices"
	"strings"

	"github.com/keelson/keelson/plugins/builtin/announcer"
	"github.com/keelson/keelson/plugins/builtin/clusterroleaggregation"
	"github.com/keelson/keelson/plugins/builtin/cronjob"
	"github.com/keelson/keelson/plugins/builtin/csrapproving"
	"github.com/keelson/keelson/plugins/builtin/csrcleaner"
	"github.com/keelson/keelson/plugins/builtin/csrsigning"
	"github.com/keelson/keelson/plugins/builtin/daemonset"
	"github.com/keelson/keelson/plugins/builtin/deployment"
	"github.com/keelson/keelson/plugins/builtin/disruption"
	"github.com/keelson/keelson/plugins/builtin/endpoints"
	"github.com/keelson/keelson/plugins/builtin/endpointslice"
	"github.com/keelson/keelson/plugins/builtin/endpointslicemirroring"
	"github.com/keelson/keelson/plugins/builtin/garbagecollector"
	"github.com/keelson/keelson/plugins/builtin/horizontalpodautoscaler"
	"github.com/keelson/keelson/plugins/builtin/ingress"
	"github.com/keelson/keelson/plugins/builtin/job"
	"github.com/keelson/keelson/plugins/builtin/localcloud"
	"github.com/keelson/keelson/plugins/builtin/localpath"
	"github.com/keelson/keelson/plugins/builtin/metricsserver"
	"github.com/keelson/keelson/plugins/builtin/namespace"
	"github.com/keelson/keelson/plugins/builtin/nodeipam"
	"github.com/keelson/keelson/plugins/builtin/nodelifecycle"
	"github.com/keelson/keelson/plugins/builtin/persistentvolume"
	"github.com/keelson/keelson/plugins/builtin/podgc"
	"github.com/keelson/keelson/plugins/builtin/replicaset"
	"github.com/keelson/keelson/plugins/builtin/replicationcontroller"
	"github.com/keelson/keelson/plugins/builtin/scheduler"
	"github.com/keelson/keelson/plugins/builtin/serviceaccount"
	"github.com/keelson/keelson/plugins/builtin/servicecidr"
	"github.com/keelson/keelson/plugins/builtin/statefulset"
	"github.com/keelson/keelson/plugins/builtin/token"
	"github.com/keelson/keelson/plugins/builtin/ttlafterfinished"
	"github.com/keelson/keelson/plugins/sdk"
)

// ServedByKeelson are the built-in plugins keelson-plugins does not serve:
// the keelson binary does (`keelson plugin NAME`; the server points the
// plugin host at it, host.BuiltinBinary.Lacks). Their libraries,
// kube-apiserver's quota evaluators (with the internal core API, its
// feature gates and image-reference parsing) and its admission policy CEL
// type checker, allocate about 2.6 MiB at start that stays: linked into
// keelson-plugins, every one of its 30-odd processes would carry it; run
// from keelson, two processes start at its larger size instead.
var ServedByKeelson = []string{"resourcequota", "vapstatus"}

// Leader returns the built-in leader plugins this binary serves, in the
// order the host starts them (package builtin adds the others in place).
func Leader() []sdk.Plugin {
	return []sdk.Plugin{
		// Namespaces become usable (default ServiceAccount, root CA) first.
		serviceaccount.Plugin(),
		token.Plugin(),
		namespace.Plugin(),
		garbagecollector.Plugin(),
		endpoints.Plugin(),
		endpointslice.Plugin(),
		endpointslicemirroring.Plugin(),
		replicaset.Plugin(),
		replicationcontroller.Plugin(),
		deployment.Plugin(),
		job.Plugin(),
		cronjob.Plugin(),
		ttlafterfinished.Plugin(),
		statefulset.Plugin(),
		daemonset.Plugin(),
		disruption.Plugin(),
		horizontalpodautoscaler.Plugin(),
		podgc.Plugin(),
		persistentvolume.Plugin(),
		localpath.Plugin(),
		scheduler.Plugin(),
		nodeipam.Plugin(),
		nodelifecycle.Plugin(),
		clusterroleaggregation.Plugin(),
		csrapproving.Plugin(),
		csrsigning.Plugin(),
		csrcleaner.Plugin(),
		servicecidr.Plugin(),
		metricsserver.Plugin(),
		// The cloud provider: LoadBalancer addresses, node initialisation.
		localcloud.Plugin(),
		// Ingress: the class, the address, the status (the data plane is
		// its node part, in NodePlugins).
		ingress.Plugin(),
	}
}

// Node returns every built-in node plugin: node agents run them (scope
// node), never the leader.
func Node() []sdk.Plugin {
	return []sdk.Plugin{announcer.Plugin(), ingress.Plugin()}
}

// Catalog is the set of built-ins a binary serves.
type Catalog struct {
	// Leader plugins in start order, and Node plugins.
	Leader, Node []sdk.Plugin
	// Elsewhere are built-ins another binary serves (keelson's).
	Elsewhere []string
}

// Lean is this binary's catalog.
func Lean() Catalog {
	return Catalog{Leader: Leader(), Node: Node(), Elsewhere: ServedByKeelson}
}

// Names returns the names of the leader plugins, sorted.
func (c Catalog) Names() []string { return names(c.Leader) }

// NodeNames returns the names of the node plugins, sorted.
func (c Catalog) NodeNames() []string { return names(c.Node) }

func names(ps []sdk.Plugin) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

// Lookup returns the built-in plugin called name.
func (c Catalog) Lookup(name string) (sdk.Plugin, bool) {
	for _, p := range append(slices.Clone(c.Leader), c.Node...) {
		if p.Name == name {
			return p, true
		}
	}
	return sdk.Plugin{}, false
}

// GroupArg is the first argument that makes a built-in plugins process a
// group: `keelson-plugins group NAME MEMBER...` serves the named built-ins
// from one process (sdk.ServeGroup; the opt-in shared mode).
const GroupArg = "group"

// Serve serves what args name: one built-in plugin (NAME), or a group of
// them (GroupArg NAME MEMBER...). It returns only on bad arguments.
func (c Catalog) Serve(args []string) error {
	all := strings.Join(c.Names(), ", ")
	if len(args) >= 1 && args[0] == GroupArg {
		if len(args) < 3 {
			return fmt.Errorf("usage: %s NAME MEMBER... (built-in plugins are: %s)", GroupArg, all)
		}
		var members []sdk.Plugin
		for _, m := range args[2:] {
			if err := c.elsewhere(m); err != nil {
				return fmt.Errorf("plugin group %s: %w", args[1], err)
			}
			p, ok := c.Lookup(m)
			if !ok || slices.Contains(c.NodeNames(), m) && p.Run == nil {
				return fmt.Errorf("plugin group %s: no built-in leader plugin %q; built-in plugins are: %s", args[1], m, all)
			}
			members = append(members, p)
		}
		sdk.ServeGroup(args[1], members)
		return nil
	}
	if len(args) != 1 {
		return fmt.Errorf("usage: NAME, or %s NAME MEMBER... (started by the keelson plugin host, not by hand); built-in plugins are: %s, %s",
			GroupArg, all, strings.Join(c.NodeNames(), ", "))
	}
	if err := c.elsewhere(args[0]); err != nil {
		return err
	}
	p, ok := c.Lookup(args[0])
	if !ok {
		return fmt.Errorf("no built-in plugin %q; built-in plugins are: %s, %s", args[0], all, strings.Join(c.NodeNames(), ", "))
	}
	sdk.Serve(p)
	return nil
}

// elsewhere says where a built-in this binary does not serve runs.
func (c Catalog) elsewhere(name string) error {
	if slices.Contains(c.Elsewhere, name) {
		return fmt.Errorf("built-in plugin %s is served by the keelson binary (`keelson plugin %s`), not by this one: the plugin host starts it so", name, name)
	}
	return nil
}
