// Package ingress runs the built-in ingress plugin end to end: one
// `keelson server` and two `keelson agent`s, each in its own network
// namespace on a bridge the test creates, plus a client namespace on the
// same bridge that is not a node. The server's LoadBalancer pool holds one
// unused address of the bridge's subnet, which the ingress Service
// (kube-system/keelson-ingress) gets and the announcer answers ARP for; the
// client sends every request to that address, so a request travels the
// whole path: ARP, the node's service rules, the node's data plane, a
// backend pod on either node.
//
// The backends run a small Go server (testdata/echo, built into an image
// on top of the test busybox) that answers on every path with its pod's
// name and the forwarding headers it received.
//
// The same cluster loads the example third-party ingress plugin
// (examples/plugins/tinyingress, scope both: its leader part on the server,
// its node part on both agents), which serves its own IngressClass on port
// 8880 of every node beside the built-in plugin; and the route metrics case
// scrapes the agents' /metrics through the API server's node proxy.
//
// One cluster serves every case as a subtest of TestIngress, to keep the
// wall time small. It needs root, containerd, runc, iptables, the CNI
// plugins and curl; it skips without them.
package ingress
