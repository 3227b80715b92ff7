// Command tinyingress is an example third-party ingress plugin: a minimal
// ingress controller for its own IngressClass, in one binary with two
// parts, written with the public plugins/sdk only.
//
//   - The leader part (Run) watches the Ingresses of classes whose
//     spec.controller is example.com/tinyingress and writes their
//     status.loadBalancer.ingress: the nodes' internal addresses, where the
//     node part serves them.
//   - The node part (RunNode), which every agent runs as the node, is the
//     data plane: plain HTTP on port 8880 (config "port") of every node,
//     routed by exact host and by path (Exact, or Prefix element-wise on
//     '/', longest first) to the ready endpoints of the backend Service.
//
// It leaves out what a real controller needs (TLS, wildcard hosts, default
// backends, the default-class annotation): the built-in plugin
// (plugins/builtin/ingress) does those. The README's "Writing an ingress
// plugin" walks through it. Build it into the plugin directory of the
// server and of every agent, create its IngressClass, and list it in the
// server's configuration with scope both:
//
//	go build -o /var/lib/keelson/plugins/tinyingress ./examples/plugins/tinyingress
//	kubectl create -f - <<<'{"apiVersion":"networking.k8s.io/v1","kind":"IngressClass","metadata":{"name":"tiny"},"spec":{"controller":"example.com/tinyingress"}}'
//
//	# server.yaml
//	plugins:
//	  external:
//	  - {name: tinyingress, sha256: <sha256sum>, preset: ingress-controller, scope: both}
package main

import (
	"encoding/json"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/keelson/keelson/plugins/sdk"
)

// ControllerName is spec.controller of the IngressClasses it serves.
const ControllerName = "example.com/tinyingress"

// Config is the plugin's configuration section.
type Config struct {
	// Port is the node port the data plane serves HTTP on (default 8880;
	// 80 when it replaces the built-in ingress plugin).
	Port int `json:"port"`
}

func parseConfig(raw json.RawMessage) (Config, error) {
	c := Config{Port: 8880}
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return c, err
	}
	if c.Port < 1 || c.Port > 65535 {
		return c, sdk.ConfigErrorf("port", "port is %d: set a TCP port between 1 and 65535", c.Port)
	}
	return c, nil
}

// rules are what the leader part does with the API, and all it is granted
// (within what the operator approved: the ingress-controller preset covers
// them). The node part acts as its node, which may read Ingresses, their
// classes, Services and EndpointSlices.
var rules = []rbacv1.PolicyRule{
	{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses", "ingressclasses"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses/status"}, Verbs: []string{"update"}},
	{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
}

func main() {
	sdk.Serve(sdk.Plugin{Name: "tinyingress", Kind: sdk.KindIngress, Version: "0.1.0", ManualReady: true,
		Run: runLeader, RunNode: runNode, Rules: rules})
}
