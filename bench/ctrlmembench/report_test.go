package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/keelson/keelson/bench/internal/procstat"
)

func TestPartOf(t *testing.T) {
	for name, want := range map[string]part{
		serverProcess: partAPI, "etcd": partAPI, "kube-apiserver": partAPI,
		"kube-controller-manager": partControllers, "group/controllers": partControllers, "replicaset": partControllers,
		"scheduler": partScheduler, "kube-scheduler": partScheduler,
		"metricsserver": partOther, "helper (pid 7)": partOther,
	} {
		if got := partOf(name); got != want {
			t.Errorf("partOf(%q) = %v, want %v", name, got, want)
		}
	}
}

// The summary row adds up what the scope compares: every process in the
// control-plane scope, only the controllers in the controllers scope.
func TestReportTotals(t *testing.T) {
	mk := func(pssMiB int64) sample {
		return sample{pss: pssMiB << 10, mem: procstat.Memory{RssAnonKiB: pssMiB << 9}}
	}
	ph := phase{load: "1.00", procs: map[string]sample{
		serverProcess: mk(100), "replicaset": mk(20), "deployment": mk(10), "scheduler": mk(40), "ingress": mk(8),
	}}
	s := side{label: "keelson isolated", idle: ph, loaded: ph}
	for _, tc := range []struct {
		sc   scope
		want string
	}{
		{scopeControlPlane, "keelson isolated 5 178.0 89.0 178.0 89.0 1.00 / 1.00"},
		{scopeControllers, "keelson isolated 2 30.0 15.0 30.0 15.0 1.00 / 1.00"},
	} {
		var out bytes.Buffer
		report(&out, tc.sc, []side{s}, workload{deployments: 1, replicas: 1})
		if !slices.ContainsFunc(strings.Split(out.String(), "\n"), func(l string) bool { return strings.Join(strings.Fields(l), " ") == tc.want }) {
			t.Errorf("-scope %s: no summary row %q in\n%s", tc.sc, tc.want, out.String())
		}
		if tc.sc == scopeControllers && !strings.Contains(out.String(), "not in the total") {
			t.Errorf("-scope controllers: the keelson-only plugins are not marked apart:\n%s", out.String())
		}
	}
}
