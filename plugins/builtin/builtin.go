// Package builtin lists the plugins compiled into the keelson binary. The
// host runs each of them as its own process (`keelson plugin NAME`), exactly
// like a third-party plugin, so a crash or a leak in one controller never
// takes the control node or another controller with it.
//
// Each built-in lives in its own package under plugins/builtin/ and exports
// Plugin() sdk.Plugin; it imports plugins/sdk and client libraries only,
// never core or agent.
package builtin

import (
	"fmt"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"

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
	"github.com/keelson/keelson/plugins/builtin/resourcequota"
	"github.com/keelson/keelson/plugins/builtin/scheduler"
	"github.com/keelson/keelson/plugins/builtin/serviceaccount"
	"github.com/keelson/keelson/plugins/builtin/servicecidr"
	"github.com/keelson/keelson/plugins/builtin/statefulset"
	"github.com/keelson/keelson/plugins/builtin/token"
	"github.com/keelson/keelson/plugins/builtin/ttlafterfinished"
	"github.com/keelson/keelson/plugins/builtin/vapstatus"
	"github.com/keelson/keelson/plugins/sdk"
)

// All returns every built-in plugin, in the order the host starts them.
func All() []sdk.Plugin {
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
		resourcequota.Plugin(),
		csrapproving.Plugin(),
		csrsigning.Plugin(),
		csrcleaner.Plugin(),
		servicecidr.Plugin(),
		vapstatus.Plugin(),
		metricsserver.Plugin(),
		// The cloud provider: LoadBalancer addresses, node initialisation.
		localcloud.Plugin(),
		// Ingress: the class, the address, the status (the data plane is
		// its node part, in NodePlugins).
		ingress.Plugin(),
	}
}

// NodePlugins returns every built-in node plugin: node agents run them
// (scope node), never the leader.
func NodePlugins() []sdk.Plugin {
	return []sdk.Plugin{announcer.Plugin(), ingress.Plugin()}
}

// NodeRules are the API permissions the built-in node plugins need beyond
// what every node agent reads; the server grants them to every node.
func NodeRules() []rbacv1.PolicyRule { return ingress.NodeRules() }

// NodeNames returns the names of NodePlugins, sorted.
func NodeNames() []string {
	var names []string
	for _, p := range NodePlugins() {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names
}

// Names returns the names of All, sorted.
func Names() []string {
	var names []string
	for _, p := range All() {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names
}

// Lookup returns the built-in plugin called name.
func Lookup(name string) (sdk.Plugin, bool) {
	for _, p := range append(All(), NodePlugins()...) {
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
func Serve(args []string) error {
	all := strings.Join(Names(), ", ")
	if len(args) >= 1 && args[0] == GroupArg {
		if len(args) < 3 {
			return fmt.Errorf("usage: %s NAME MEMBER... (built-in plugins are: %s)", GroupArg, all)
		}
		var members []sdk.Plugin
		for _, m := range args[2:] {
			p, ok := Lookup(m)
			if !ok || slices.Contains(NodeNames(), m) && p.Run == nil {
				return fmt.Errorf("plugin group %s: no built-in leader plugin %q; built-in plugins are: %s", args[1], m, all)
			}
			members = append(members, p)
		}
		sdk.ServeGroup(args[1], members)
		return nil
	}
	if len(args) != 1 {
		return fmt.Errorf("usage: NAME, or %s NAME MEMBER... (started by the keelson plugin host, not by hand); built-in plugins are: %s, %s",
			GroupArg, all, strings.Join(NodeNames(), ", "))
	}
	p, ok := Lookup(args[0])
	if !ok {
		return fmt.Errorf("no built-in plugin %q; built-in plugins are: %s, %s", args[0], all, strings.Join(NodeNames(), ", "))
	}
	sdk.Serve(p)
	return nil
}
