// Package cloud tests cloud-provider plugins end to end, with real keelson
// processes: the built-in localcloud provider gives LoadBalancer Services
// addresses from a configured pool (one address never held by two
// Services, released on delete and on a type change, Services of another
// loadBalancerClass left alone), and with no pool the ready nodes' own
// addresses, through which a client namespace on the test bridge that is
// not a node reaches a backend pod; the example third-party provider
// (examples/plugins/filecloud), loaded from the plugin directory,
// initialises a node registered by `keelson agent --cloud-provider=external`
// (labels, provider ID, addresses) and lifts its uninitialized taint.
//
// It needs root; the node-address test also needs containerd, runc,
// iptables, the CNI plugins and network namespaces, and skips without them.
package cloud
