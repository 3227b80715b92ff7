package pods

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/keelson/keelson/agent/cni"
	"github.com/keelson/keelson/agent/volumes"
	v1 "k8s.io/api/core/v1"
)

// sandbox is what a pod's containers share: its directory, network
// namespace and address, volumes and the hosts, resolver and hostname files.
type sandbox struct {
	dir      string
	netns    string   // empty for hostNetwork
	podIP    string   // the primary address, podIPs[0]
	podIPs   []string // one per family of the node's pod CIDRs
	hostname string
	hosts    string
	resolv   string
	hostFile string
	volumes  map[string]volumes.Volume
	// images are the image volumes as the latest sync that started
	// containers readied them (Setup leaves them out).
	images map[string]imageVolume
}

// ensureSandbox sets up (or finds) the pod's directory, network and
// volumes, and refreshes the volumes every sync interval.
func (w *worker) ensureSandbox(ctx context.Context, pod *v1.Pod) (*sandbox, error) {
	m := w.m
	sb := w.sandbox
	if sb == nil {
		sb = &sandbox{dir: m.PodDir(pod.UID)}
		if err := os.MkdirAll(sb.dir, 0o750); err != nil {
			return nil, err
		}
	}
	hostIPs := m.opts.Node.HostIPs()
	if pod.Spec.HostNetwork {
		if len(hostIPs) > 0 {
			sb.podIP, sb.podIPs = hostIPs[0], hostIPs
		}
	} else if sb.netns == "" {
		if m.opts.Network.PodCIDR() == "" {
			if cidr := m.opts.Node.PodCIDR(); cidr != "" {
				if err := m.opts.Network.SetPodCIDR(cidr); err != nil {
					return nil, err
				}
			}
		}
		if err := m.netSlots.acquire(ctx); err != nil {
			return nil, err
		}
		start := m.clock.Now()
		path, ips, err := m.opts.Network.Setup(ctx, podRef(pod, pod.UID), hostPorts(pod))
		m.netSlots.release()
		if err != nil {
			if errors.Is(err, cni.ErrNoPodCIDR) {
				return nil, err
			}
			return nil, fmt.Errorf("setting up the pod network: %w", err)
		}
		sb.netns, sb.podIPs = path, nil
		for _, ip := range ips {
			sb.podIPs = append(sb.podIPs, ip.String())
		}
		sb.podIP = sb.podIPs[0]
		m.log.Debug("pod network set up", "pod", podKey(pod), "ips", sb.podIPs, "took", m.clock.Since(start))
	}
	if sb.volumes == nil || m.clock.Since(w.volumesAt) >= max(m.opts.SyncInterval, m.opts.Node.ObjectTTL()) {
		vols, err := m.opts.Volumes.Setup(ctx, pod, sb.dir, volumes.Env{PodIPs: sb.podIPs, HostIPs: hostIPs,
			Allocatable: m.opts.Node.Allocatable(), NodeName: m.opts.NodeName, NodeLabels: m.opts.Node.Labels()})
		if err != nil {
			m.event(pod, v1.EventTypeWarning, "FailedMount", "MountVolume.SetUp failed for %v", err)
			return nil, fmt.Errorf("setting up volumes: %w", err)
		}
		sb.volumes, w.volumesAt = vols, m.clock.Now()
	}
	if err := m.writePodFiles(pod, sb); err != nil {
		return nil, err
	}
	w.sandbox = sb
	return sb, nil
}

// writePodFiles writes /etc/hosts, /etc/resolv.conf and /etc/hostname for
// the pod's containers, once: they are bind-mounted, so a rewrite would not
// reach running containers anyway.
func (m *Manager) writePodFiles(pod *v1.Pod, sb *sandbox) error {
	if sb.hosts != "" {
		return nil
	}
	hostname, domain, _ := podHostname(pod, m.opts.ClusterDomain)
	var hosts []byte
	if pod.Spec.HostNetwork {
		node, err := os.ReadFile("/etc/hosts")
		if err != nil {
			return err
		}
		hosts = hostNetworkHostsFile(node, pod.Spec.HostAliases)
	} else {
		hosts = hostsFile(sb.podIPs, hostname, domain, pod.Spec.HostAliases)
	}
	hostConf, err := os.ReadFile(m.opts.ResolvConf)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	resolv := resolvConf(pod, hostConf, m.opts.ClusterDNS, m.opts.ClusterDomain)
	uts, err := containerHostname(pod, m.opts.ClusterDomain)
	if err != nil {
		return err
	}
	if pod.Spec.HostNetwork {
		uts, _ = os.Hostname()
	}
	files := map[string][]byte{"etc-hosts": hosts, "resolv.conf": resolv, "hostname": []byte(uts + "\n")}
	for name, data := range files {
		p := filepath.Join(sb.dir, name)
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, data) {
			continue
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	sb.hosts, sb.resolv, sb.hostFile = filepath.Join(sb.dir, "etc-hosts"), filepath.Join(sb.dir, "resolv.conf"), filepath.Join(sb.dir, "hostname")
	sb.hostname = strings.TrimSpace(uts)
	return nil
}

// hostPorts lists the pod's published host ports.
func hostPorts(pod *v1.Pod) []cni.PortMapping {
	var out []cni.PortMapping
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			proto := strings.ToLower(string(p.Protocol))
			if proto == "" {
				proto = "tcp"
			}
			out = append(out, cni.PortMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: proto, HostIP: p.HostIP})
		}
	}
	return out
}
