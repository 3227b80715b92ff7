package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// upstreamControllers maps keelson's built-in controller plugins to the
// kube-controller-manager controllers doing the same work (the README's
// table "Upstream controllers and the plugins that do their work"): both
// sides run every controller keelson has an upstream counterpart for. One
// plugin may do the work of several controllers.
var upstreamControllers = map[string][]string{
	"clusterroleaggregation":  {"clusterrole-aggregation-controller"},
	"cronjob":                 {"cronjob-controller"},
	"csrapproving":            {"certificatesigningrequest-approving-controller"},
	"csrcleaner":              {"certificatesigningrequest-cleaner-controller", "podcertificaterequest-cleaner-controller"},
	"csrsigning":              {"certificatesigningrequest-signing-controller"},
	"daemonset":               {"daemonset-controller"},
	"deployment":              {"deployment-controller"},
	"disruption":              {"disruption-controller"},
	"endpoints":               {"endpoints-controller"},
	"endpointslice":           {"endpointslice-controller"},
	"endpointslicemirroring":  {"endpointslice-mirroring-controller"},
	"garbagecollector":        {"garbage-collector-controller"},
	"horizontalpodautoscaler": {"horizontal-pod-autoscaler-controller"},
	"job":                     {"job-controller"},
	"namespace":               {"namespace-controller"},
	"nodeipam":                {"node-ipam-controller"},
	"nodelifecycle":           {"node-lifecycle-controller", "taint-eviction-controller", "ttl-controller"},
	"persistentvolume": {
		"persistentvolume-binder-controller", "persistentvolume-protection-controller",
		"persistentvolumeclaim-protection-controller", "ephemeral-volume-controller",
		"persistentvolume-expander-controller",
	},
	"podgc":                 {"pod-garbage-collector-controller"},
	"replicaset":            {"replicaset-controller"},
	"replicationcontroller": {"replicationcontroller-controller"},
	"resourcequota":         {"resourcequota-controller"},
	"serviceaccount": {
		"serviceaccount-controller", "root-ca-certificate-publisher-controller",
		"kube-apiserver-serving-clustertrustbundle-publisher-controller",
	},
	"servicecidr":      {"service-cidr-controller"},
	"statefulset":      {"statefulset-controller"},
	"token":            {"serviceaccount-token-controller", "legacy-serviceaccount-token-cleaner-controller"},
	"ttlafterfinished": {"ttl-after-finished-controller"},
	"vapstatus":        {"validatingadmissionpolicy-status-controller"},
}

// keelsonOnly are the built-in plugins the server runs that have no
// kube-controller-manager counterpart, with what does their work upstream.
// With -keelson-only they are measured on the keelson side and printed
// apart, outside the totals, so the totals still compare the same work.
var keelsonOnly = map[string]string{
	"localpath":     "rancher's local-path-provisioner",
	"metricsserver": "metrics-server",
	"scheduler":     "kube-scheduler",
	"localcloud":    "cloud-controller-manager",
	"ingress":       "an ingress controller",
}

// kcmControllers returns the --controllers list of kube-controller-manager:
// every controller of upstreamControllers, sorted.
func kcmControllers() []string {
	var ctrls []string
	for _, cs := range upstreamControllers {
		ctrls = append(ctrls, cs...)
	}
	slices.Sort(ctrls)
	return ctrls
}

// pluginName returns the built-in plugin a process runs, from its command
// line: `keelson-plugins NAME` (the multicall binary the host runs) or
// `keelson plugin NAME` (the host re-executing keelson, as before). A group
// process (`... group NAME MEMBER...`, the shared mode) is named
// "group/NAME" and returns its members.
func pluginName(cmdline string) (name string, members []string, ok bool) {
	f := strings.Fields(cmdline)
	switch {
	case len(f) >= 2 && filepath.Base(f[0]) == "keelson-plugins":
		f = f[1:]
	case len(f) >= 3 && f[1] == "plugin":
		f = f[2:]
	default:
		return "", nil, false
	}
	if len(f) >= 3 && f[0] == "group" {
		return "group/" + f[1], f[2:], true
	}
	return f[0], nil, true
}

// sharedGroup is the group the shared side (-shared) puts every plugin
// with a kube-controller-manager counterpart in.
const sharedGroup = "controllers"

// sharedGroupFlag is the server flag of the shared side.
func sharedGroupFlag() string {
	var names []string
	for n := range upstreamControllers {
		names = append(names, n)
	}
	slices.Sort(names)
	return sharedGroup + "=" + strings.Join(names, ",")
}

// measured says whether the keelson side counts plugin name.
func measured(name string, withKeelsonOnly bool) bool {
	if _, ok := upstreamControllers[name]; ok {
		return true
	}
	_, ok := keelsonOnly[name]
	return ok && withKeelsonOnly
}

// pluginPIDs picks the measured plugins out of the server's children (PID
// to command line) and fails naming any measured plugin that is not
// running, so that a side is never compared with a part of it missing.
func pluginPIDs(children map[int]string, withKeelsonOnly bool) (map[string]int, error) {
	pids := map[string]int{}
	grouped := map[string]bool{}
	for pid, cmd := range children {
		name, members, ok := pluginName(cmd)
		if ok && members != nil {
			pids[name] = pid
			for _, m := range members {
				grouped[m] = true
			}
		} else if ok && measured(name, withKeelsonOnly) {
			pids[name] = pid
		}
	}
	var missing []string
	for name := range upstreamControllers {
		if _, ok := pids[name]; !ok && !grouped[name] {
			missing = append(missing, name)
		}
	}
	for name := range keelsonOnly {
		if _, ok := pids[name]; !ok && withKeelsonOnly && !grouped[name] {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("keelson server runs no plugin process for %s (is the plugin disabled, or renamed? the bench maps plugins in bench/ctrlmembench/controllers.go)", strings.Join(missing, ", "))
	}
	return pids, nil
}

// everyChild names every child process of the server, the whole control
// plane's share of it: each plugin or group as pluginPIDs does (failing
// like it when a built-in plugin is not running), and any other child by
// its executable's base name and PID, so nothing the server starts is left
// out of its total.
func everyChild(children map[int]string) (map[string]int, error) {
	pids, err := pluginPIDs(children, true)
	if err != nil {
		return nil, err
	}
	named := map[int]bool{}
	for _, pid := range pids {
		named[pid] = true
	}
	for pid, cmd := range children {
		if named[pid] {
			continue
		}
		name := "?"
		if f := strings.Fields(cmd); len(f) > 0 {
			name = filepath.Base(f[0])
		}
		pids[name+" (pid "+strconv.Itoa(pid)+")"] = pid
	}
	return pids, nil
}
