// Package proxy is the node's service proxy: it programs iptables so that
// traffic to a Service's cluster IP, node ports, external IPs and
// load-balancer IPs reaches the Service's ready endpoints, in the iptables
// mode of kube-proxy (services, per-port and per-endpoint chains in the nat
// table, random balancing, ClientIP affinity with the recent match,
// masquerade through a mark, rejects for services without endpoints in the
// filter table).
//
// The pieces, from pure to effectful:
//
//   - Snapshot turns Services and EndpointSlices into ServicePorts for one
//     IP family and node (which endpoints serve, which are local);
//   - Rules turns ServicePorts into the proxy's chains (a ruleset.Ruleset);
//   - Proxier syncs on every informer event, at most once per
//     MinSyncPeriod, writing only the chains that changed with one
//     iptables-restore --noflush per family, and cleans UDP/SCTP conntrack
//     entries that the new rules would not reach;
//   - Cleanup removes everything the proxy installed (keelson agent
//     --cleanup).
//
// Wiring, in the agent:
//
//	p, err := proxy.New(proxy.Config{NodeName: node, ClusterCIDRs: cidrs, Exempt: []netip.Addr{dnsIP}},
//		factory.Core().V1().Services().Informer(), factory.Discovery().V1().EndpointSlices().Informer(), log)
//	factory.Start(ctx.Done())
//	go p.Run(ctx)
//
// The node needs net.ipv4.ip_forward=1 and, for pods on a Linux bridge,
// br_netfilter with net.bridge.bridge-nf-call-iptables=1: replies between
// two pods of one bridge are bridged, not routed, and must still pass
// conntrack to be un-DNATed. Package network sets both.
package proxy
