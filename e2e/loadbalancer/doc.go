// Package loadbalancer runs the built-in LoadBalancer announcer end to end:
// one `keelson server` (--disable-agent) and three `keelson agent`s, each in
// its own network namespace on a bridge the test creates, plus a client
// namespace on the same bridge that is not a node. The built-in cloud
// provider gives each LoadBalancer Service the address of the bridge's
// subnet it asks for, from a pool the server is configured with (.200 to
// .209, no host uses them), and the test checks that
// the client reaches it over HTTP, that exactly one node answers ARP for it,
// that the IP moves to another node when the announcing node dies (its agent
// killed with kill -9 and its cable pulled, measuring the gap between the
// first failed and the first successful request), that with
// externalTrafficPolicy: Local only a node with a local endpoint announces
// and the backend sees the client's own address, that healthCheckNodePort
// answers, and that `kubectl get plugins` shows the announcer per node.
//
// TestAnnouncerIPv6 does the same for IPv6 on a dual-stack cluster: a
// pool address of a ULA prefix the test puts on the bridge, resolved by
// NDP (exactly one node answers, seen from a raw socket in the client's
// namespace) and moved by an unsolicited neighbour advertisement.
//
// Node a3 carries node.kubernetes.io/exclude-from-external-load-balancers
// and runs the Cluster-policy backends, so killing an announcing node never
// takes a backend with it.
//
// It needs root, containerd, runc, iptables and the CNI plugins; it skips
// without them. Traffic stays on the bridge and inside the namespaces.
package loadbalancer
