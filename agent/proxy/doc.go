// Package proxy is the node's service proxy: it programs the kernel so
// that traffic to a Service's cluster IP, node ports, external IPs and
// load-balancer IPs reaches the Service's ready endpoints, in one of two
// modes (Config.Mode):
//
//   - iptables, kube-proxy's iptables mode: services, per-port and
//     per-endpoint chains in the nat table, random balancing, ClientIP
//     affinity with the recent match, masquerade through a mark, rejects
//     for services without endpoints in the filter table;
//   - nftables (the default where the kernel supports it), kube-proxy's
//     nftables mode: one table per family ("ip keelson", "ip6 keelson")
//     whose service lookups are verdict maps (address . protocol . port ->
//     the service's chain; node ports and services without endpoints
//     likewise), numgen-random DNAT to the port's block of an endpoints
//     data map (per-endpoint chains only under ClientIP affinity, kept in
//     dynamic sets), masquerade through the same mark, hairpin through a
//     set of endpoints, written over netlink (github.com/google/nftables).
//     A change regenerates and rewrites only the map elements and chains
//     of the service ports that changed; replacing an endpoint rewrites
//     map elements alone.
//
// The pieces, from pure to effectful:
//
//   - Snapshot turns Services and EndpointSlices into ServicePorts for one
//     IP family and node (which endpoints serve, which are local), for
//     both modes;
//   - Rules turns ServicePorts into the iptables mode's chains (a
//     ruleset.Ruleset); NFTFixed and NFTPort into the nftables mode's
//     table (NFTTables whose rules carry their nft text and netlink
//     expressions, built together), planNFTChanges the parts of the ports
//     that changed, and NFTDiff two tables into one transaction;
//   - Proxier syncs on every informer event, at most once per
//     MinSyncPeriod, recomputing only the services whose Service or
//     EndpointSlices changed (a change tracker fed by the informers'
//     events keeps each family's ports by service), through its mode's
//     dataplane: one iptables-restore
//     --noflush or one netlink transaction per family writing only what
//     changed, and cleans UDP/SCTP conntrack entries that the new rules
//     would not reach;
//   - Cleanup removes everything either mode installed (keelson agent
//     --cleanup).
//
// NetworkPolicy (agent/netpol) stays in iptables' filter table in both
// modes. It uses its own mark bit (16; the proxy's is 14), and runs at
// the filter hooks after the proxy's DNAT (priority -100), so it sees
// pods' addresses either way. In the nftables mode the proxy accepts
// nothing in other tables' chains: a host whose iptables FORWARD policy
// is DROP must accept the pod and service traffic itself, as with
// kube-proxy's nftables mode.
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
