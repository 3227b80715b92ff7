// Package builtin lists the plugins compiled into the keelson binary. The
// host runs each of them as its own process, exactly like a third-party
// plugin, so a crash or a leak in one controller never takes the control
// node or another controller with it: most from the keelson-plugins binary
// (package multicall), the few of multicall.ServedByKeelson as `keelson
// plugin NAME`.
//
// Each built-in lives in its own package under plugins/builtin/ and exports
// Plugin() sdk.Plugin; it imports plugins/sdk and client libraries only,
// never core or agent.
package builtin

import (
	"slices"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/keelson/keelson/plugins/builtin/ingress"
	"github.com/keelson/keelson/plugins/builtin/multicall"
	"github.com/keelson/keelson/plugins/builtin/resourcequota"
	"github.com/keelson/keelson/plugins/builtin/vapstatus"
	"github.com/keelson/keelson/plugins/sdk"
)

// All returns every built-in plugin, in the order the host starts them:
// multicall's, with the ones the keelson binary serves in their places.
func All() []sdk.Plugin {
	all := multicall.Leader()
	all = insertAfter(all, "clusterroleaggregation", resourcequota.Plugin())
	return insertAfter(all, "servicecidr", vapstatus.Plugin())
}

// insertAfter puts p after the plugin called name (at the end without it).
func insertAfter(ps []sdk.Plugin, name string, p sdk.Plugin) []sdk.Plugin {
	i := slices.IndexFunc(ps, func(q sdk.Plugin) bool { return q.Name == name })
	if i < 0 {
		return append(ps, p)
	}
	return slices.Insert(ps, i+1, p)
}

// catalog is everything the keelson binary serves.
func catalog() multicall.Catalog { return multicall.Catalog{Leader: All(), Node: NodePlugins()} }

// NodePlugins returns every built-in node plugin: node agents run them
// (scope node), never the leader.
func NodePlugins() []sdk.Plugin { return multicall.Node() }

// NodeRules are the API permissions the built-in node plugins need beyond
// what every node agent reads; the server grants them to every node.
func NodeRules() []rbacv1.PolicyRule { return ingress.NodeRules() }

// NodeNames returns the names of NodePlugins, sorted.
func NodeNames() []string { return catalog().NodeNames() }

// Names returns the names of All, sorted.
func Names() []string { return catalog().Names() }

// Lookup returns the built-in plugin called name.
func Lookup(name string) (sdk.Plugin, bool) { return catalog().Lookup(name) }

// GroupArg is the first argument that makes a built-in plugins process a
// group (multicall.GroupArg).
const GroupArg = multicall.GroupArg

// Serve serves what args name, any built-in: one plugin (NAME), or a
// group of them (GroupArg NAME MEMBER...). It returns only on bad
// arguments.
func Serve(args []string) error { return catalog().Serve(args) }
