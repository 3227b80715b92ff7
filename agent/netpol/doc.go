// Package netpol enforces NetworkPolicies for the pods of one node with
// iptables (filter table): a pod selected by a policy of a type (Ingress,
// Egress) is isolated in that direction and accepts only the connections
// some rule of those policies allows (podSelector, namespaceSelector, both
// combined in one peer, ipBlock with except, ports with protocols, ranges
// and named ports). Each node enforces ingress and egress for its own pods,
// so together the nodes enforce every connection at both ends.
//
// Compile is a pure function from policies, pods and namespaces to the
// chains (per pod IP and direction, per rule, per ipBlock); the Enforcer
// recompiles on every informer event, at most once per MinSyncPeriod, and
// writes the changed chains with one iptables-restore. Denied connections
// are rejected (clients fail fast); replies of allowed connections pass
// through conntrack. Traffic from the node to its pods (probes) is never
// filtered, nor are queries to the node's own cluster DNS address.
//
// Wiring, in the agent (pods of the whole cluster are peers):
//
//	e, err := netpol.New(netpol.Options{NodeName: node, Exempt: []netip.Addr{dnsIP}},
//		factory.Networking().V1().NetworkPolicies().Informer(), allPods, factory.Core().V1().Namespaces().Informer(), log)
//	go e.Run(ctx)
package netpol
