// Package dns is the cluster DNS server every node runs on the cluster DNS
// address: it answers the Kubernetes DNS schema (version 1.1.0 of the
// specification, the records CoreDNS's kubernetes plugin serves) from
// informer caches, and forwards every other name to the nameservers of the
// node's resolv.conf.
//
// Records served, for zone cluster.local:
//
//   - <svc>.<ns>.svc.<zone> A/AAAA: the cluster IPs; for a headless service
//     the ready endpoints (all with publishNotReadyAddresses);
//   - <hostname>.<svc>.<ns>.svc.<zone> A/AAAA: a headless service's endpoint
//     by its hostname (a pod's spec.hostname with spec.subdomain = svc) or
//     by its address with dashes;
//   - _<port>._<proto>.<svc>.<ns>.svc.<zone> SRV for named ports (and SRV on
//     the service name for every port), targets in the additional section;
//   - <a-b-c-d>.<ns>.pod.<zone> A (the address in the name);
//   - ExternalName services: a CNAME, with the target's records;
//   - PTR for cluster IPs and headless endpoints; dns-version.<zone> TXT.
//
// Names that do not exist get NXDOMAIN, names that exist without records of
// the asked type NODATA, both with the zone's SOA. When the node has no
// upstream nameserver, forwarded names get SERVFAIL at once.
//
// Wiring, in the agent (the address must be local, see package network):
//
//	catalog, err := dns.NewInformerCatalog(servicesInformer, endpointSlicesInformer)
//	srv, err := dns.New(dns.Options{Addresses: []netip.Addr{clusterDNS}}, catalog, log)
//	factory.Start(ctx.Done())
//	go srv.Run(ctx)
package dns
