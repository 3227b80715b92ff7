// Package netpol enforces NetworkPolicies for the pods of one node: a pod
// selected by a policy of a type (Ingress, Egress) is isolated in that
// direction and accepts only the connections some rule of those policies
// allows (podSelector, namespaceSelector, both combined in one peer,
// ipBlock with except, ports with protocols, ranges and named ports). Each
// node enforces ingress and egress for its own pods, so together the nodes
// enforce every connection at both ends.
//
// One compiler decides, two modes spell it out. The compiler (plan, a pure
// function of policies, pods and namespaces) yields, per local pod address
// and direction, the rules that apply and what each allows: a set of peer
// pod addresses, an ipBlock minus its exceptions or anyone, on a protocol
// and port range. The mode follows the service proxy's (Options.Mode, the
// proxy's resolved mode):
//
//   - iptables (Compile): chains of the filter table per pod address and
//     direction, per rule and per ipBlock, jumped to first from FORWARD
//     and INPUT, written with one iptables-restore of the changed chains.
//   - nftables (CompileNFT): a table of its own, "ip keelson-netpol" and
//     "ip6 keelson-netpol", not chains in the proxy's table "keelson": each
//     table then has one owner that replaces it whole on a full sync and
//     deletes it on cleanup, the two sync on their own schedules, and no
//     verdict of the proxy can skip a policy (an accept ends only its own
//     table's base chain; a reject ends the packet). Its base chains hook
//     forward and input at the filter priority, after the proxy's DNAT,
//     and jump to a chain per pod address and direction that returns on
//     the first allowing rule and rejects otherwise. Peer pods are named
//     sets (one per policy rule and peer, and port for named ports on
//     egress), so a pod coming, going or relabelled changes set elements,
//     not chains. A sync is one netlink transaction holding only the
//     changed chains and set elements; a full sync (the first, every
//     SyncPeriod, after a failure) deletes and rewrites the table in one
//     transaction.
//
// The Enforcer recompiles on every informer event, at most once per
// MinSyncPeriod, and after its first successful sync removes what the
// other mode left. Denied connections are rejected (clients fail fast);
// replies of allowed connections pass through conntrack. Traffic from the
// node to its pods (probes) is never filtered, nor are queries to the
// node's own cluster DNS address. Cleanup removes both modes' rules.
//
// Wiring, in the agent (pods of the whole cluster are peers):
//
//	e, err := netpol.New(netpol.Options{NodeName: node, Exempt: []netip.Addr{dnsIP}, Mode: proxier.Mode()},
//		factory.Networking().V1().NetworkPolicies().Informer(), allPods, factory.Core().V1().Namespaces().Informer(), log)
//	go e.Run(ctx)
package netpol
