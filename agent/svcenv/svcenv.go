// Package svcenv computes the service environment variables a container
// starts with (MY_NGINX_SERVICE_HOST, MY_NGINX_PORT_80_TCP_ADDR, ...), as
// kubelet does: the docker-links style variables of every service of the
// pod's namespace that exists when the container starts, plus those of the
// master service (kubernetes in default) for every pod.
//
// The pod code calls FromServices with the services known at container
// start and puts the result before the container's own env, which wins on
// a name clash (kubelet's precedence):
//
//	vars := svcenv.FromServices(pod.Namespace, servicesLister.List(...), enableServiceLinks)
package svcenv

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// Var is one environment variable.
type Var struct{ Name, Value string }

// masterService is the service of the default namespace every pod gets
// variables for, whether or not service links are enabled.
const masterService = "kubernetes"

// FromServices returns the variables of services for a pod in namespace,
// sorted by name. Services without a cluster IP (headless, ExternalName)
// have none. enableServiceLinks is the pod's spec.enableServiceLinks (nil
// means true); without it only the master services count. A service of
// the pod's namespace overrides a master service of the same name, as in
// kubelet.
func FromServices(namespace string, services []*v1.Service, enableServiceLinks *bool) []Var {
	links := enableServiceLinks == nil || *enableServiceLinks
	chosen := map[string]*v1.Service{}
	for _, s := range services {
		if !hasClusterIP(s) {
			continue
		}
		switch {
		case s.Namespace == "default" && s.Name == masterService:
			if _, ok := chosen[s.Name]; !ok {
				chosen[s.Name] = s
			}
		case s.Namespace == namespace && links:
			chosen[s.Name] = s
		}
	}
	var out []Var
	for _, s := range chosen {
		out = append(out, serviceVars(s)...)
	}
	slices.SortFunc(out, func(a, b Var) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func hasClusterIP(s *v1.Service) bool {
	return s.Spec.ClusterIP != "" && s.Spec.ClusterIP != v1.ClusterIPNone && len(s.Spec.Ports) > 0
}

// serviceVars are one service's variables.
func serviceVars(s *v1.Service) []Var {
	prefix := envName(s.Name)
	ip := s.Spec.ClusterIP
	out := []Var{
		{prefix + "_SERVICE_HOST", ip},
		{prefix + "_SERVICE_PORT", strconv.Itoa(int(s.Spec.Ports[0].Port))},
	}
	for _, p := range s.Spec.Ports {
		if p.Name != "" {
			out = append(out, Var{prefix + "_SERVICE_PORT_" + envName(p.Name), strconv.Itoa(int(p.Port))})
		}
	}
	for i, p := range s.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(v1.ProtocolTCP)
		}
		url := fmt.Sprintf("%s://%s", strings.ToLower(proto), net.JoinHostPort(ip, strconv.Itoa(int(p.Port))))
		if i == 0 { // docker links name the first port's URL <NAME>_PORT
			out = append(out, Var{prefix + "_PORT", url})
		}
		base := fmt.Sprintf("%s_PORT_%d_%s", prefix, p.Port, strings.ToUpper(proto))
		out = append(out,
			Var{base, url},
			Var{base + "_PROTO", strings.ToLower(proto)},
			Var{base + "_PORT", strconv.Itoa(int(p.Port))},
			Var{base + "_ADDR", ip})
	}
	return out
}

// envName turns a DNS label into an environment variable name.
func envName(s string) string {
	return strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
}
