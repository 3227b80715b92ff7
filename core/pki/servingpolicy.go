package pki

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// ServingPolicy says which names and addresses a node's kubelet serving
// certificate may carry. A serving certificate signed by the cluster CA is
// what kube-apiserver and agents trust to be the kubelet at that name or
// address, so a node may only claim its own: its node name, and addresses
// that are nobody else's.
type ServingPolicy struct {
	// NodeName is the only DNS name allowed (a node's Hostname address is
	// its name).
	NodeName string
	// AllowLoopback permits loopback addresses. Only a server's own agent,
	// which joins with the server token, may serve on 127.0.0.1 (a
	// single-host cluster).
	AllowLoopback bool
	// DeniedNets are ranges no node address may fall in: the service
	// ranges, whose addresses belong to Services (kubernetes.default first).
	DeniedNets []*net.IPNet
	// DeniedIPs are addresses that belong to others: the servers' and the
	// other Nodes' addresses.
	DeniedIPs []net.IP
}

// CheckNodeName refuses node names that would make a node's certificates
// stand for something else: localhost and the kubernetes service's names.
func CheckNodeName(name string) error {
	n := strings.ToLower(name)
	switch {
	case n == "localhost" || strings.HasSuffix(n, ".localhost"):
		return fmt.Errorf("node name %q is reserved: it names the local host", name)
	case n == "kubernetes" || strings.HasPrefix(n, "kubernetes."):
		return fmt.Errorf("node name %q is reserved: it names the API server's service", name)
	case strings.HasSuffix(n, ".svc") || strings.Contains(n, ".svc."):
		return fmt.Errorf("node name %q is reserved: it is a service's DNS name", name)
	}
	return nil
}

// Check returns an error naming every DNS name and address of the request
// that the policy refuses.
func (p ServingPolicy) Check(r *NodeRequest) error {
	var errs []error
	if err := CheckNodeName(p.NodeName); err != nil {
		errs = append(errs, err)
	}
	for _, d := range r.Serving.DNSNames {
		if !strings.EqualFold(d, p.NodeName) {
			errs = append(errs, fmt.Errorf("DNS name %q: a node's serving certificate may only name the node (%q)", d, p.NodeName))
		}
	}
	for _, ip := range r.Serving.IPAddresses {
		if err := p.checkIP(ip); err != nil {
			errs = append(errs, fmt.Errorf("IP address %s: %w", ip, err))
		}
	}
	if len(r.Serving.URIs)+len(r.Serving.EmailAddresses) > 0 {
		errs = append(errs, errors.New("URIs and e-mail addresses are not allowed"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pki: the serving certificate request of node %q: %w", p.NodeName, err)
	}
	return nil
}

func (p ServingPolicy) checkIP(ip net.IP) error {
	switch {
	case ip.IsLoopback() && !p.AllowLoopback:
		return errors.New("loopback addresses are reserved for a server's own agent")
	case ip.IsUnspecified(), ip.IsMulticast(), ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return errors.New("not a node address")
	}
	for _, n := range p.DeniedNets {
		if n.Contains(ip) {
			return fmt.Errorf("in the service range %s", n)
		}
	}
	for _, d := range p.DeniedIPs {
		if d.Equal(ip) {
			return errors.New("belongs to a server or another node")
		}
	}
	return nil
}
