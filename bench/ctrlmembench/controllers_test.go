package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	kcmnames "k8s.io/kubernetes/cmd/kube-controller-manager/names"

	"github.com/keelson/keelson/plugins/builtin"
)

// Every built-in plugin the server runs is either compared with
// kube-controller-manager or listed as keelson-only, so a new plugin
// cannot be left out of the bench unnoticed.
func TestEveryServerPluginIsMeasured(t *testing.T) {
	for _, name := range builtin.Names() {
		_, compared := upstreamControllers[name]
		_, apart := keelsonOnly[name]
		switch {
		case compared && apart:
			t.Errorf("plugin %s is both compared with kube-controller-manager and keelson-only", name)
		case !compared && !apart:
			t.Errorf("built-in plugin %s is in neither upstreamControllers nor keelsonOnly (bench/ctrlmembench/controllers.go)", name)
		}
	}
	for name := range upstreamControllers {
		if !slices.Contains(builtin.Names(), name) {
			t.Errorf("upstreamControllers names %s, which is no built-in plugin", name)
		}
	}
	for name := range keelsonOnly {
		if !slices.Contains(builtin.Names(), name) {
			t.Errorf("keelsonOnly names %s, which is no built-in plugin", name)
		}
	}
}

// The names package is imported (by this test only) so that `go list`
// finds it in the module graph at the pinned upstream version.
var _ = kcmnames.ResourceQuotaController

// Every --controllers name is one kube-controller-manager knows, and none
// is given twice (two plugins claiming one controller).
func TestKCMControllersAreUpstreamNames(t *testing.T) {
	known := kcmNames(t)
	ctrls := kcmControllers()
	for i, c := range ctrls {
		if !slices.Contains(known, c) {
			t.Errorf("%s is not a kube-controller-manager controller name", c)
		}
		if i > 0 && ctrls[i-1] == c {
			t.Errorf("%s is mapped from two plugins", c)
		}
	}
}

// kcmNames returns the controller names of kube-controller-manager's names
// package (its string constants ending in -controller).
func kcmNames(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.Dir}}", "k8s.io/kubernetes/cmd/kube-controller-manager/names").Output()
	if err != nil {
		t.Fatalf("go list the names package: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "*.go"))
	var names []string
	for _, f := range files {
		file, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && strings.HasSuffix(s, "-controller") {
					names = append(names, s)
				}
			}
			return true
		})
	}
	if len(names) == 0 {
		t.Fatal("no controller names found in kube-controller-manager's names package")
	}
	return names
}

func TestPluginName(t *testing.T) {
	for _, tc := range []struct {
		cmdline, want string
		ok            bool
	}{
		{"/data/plugins/0a1b/keelson-plugins replicaset", "replicaset", true},
		{"/work/bin/keelson plugin endpoints", "endpoints", true},
		{"/work/bin/keelson server --data-dir /x", "", false},
		{"/data/plugins/0a1b/keelson-plugins", "", false},
		{"", "", false},
	} {
		got, members, ok := pluginName(tc.cmdline)
		if got != tc.want || ok != tc.ok || members != nil {
			t.Errorf("pluginName(%q) = %q, %v; want %q, %v", tc.cmdline, got, ok, tc.want, tc.ok)
		}
	}
}

func TestPluginPIDs(t *testing.T) {
	children := map[int]string{1: "/usr/bin/containerd"}
	pid := 100
	for name := range upstreamControllers {
		children[pid] = "/d/keelson-plugins " + name
		pid++
	}
	pids, err := pluginPIDs(children, false)
	if err != nil {
		t.Fatalf("all compared plugins running, without keelson-only: %v", err)
	}
	if len(pids) != len(upstreamControllers) {
		t.Errorf("got %d plugins, want %d", len(pids), len(upstreamControllers))
	}
	if _, err := pluginPIDs(children, true); err == nil || !strings.Contains(err.Error(), "localpath") {
		t.Errorf("keelson-only plugins not running: err = %v, want one naming localpath", err)
	}
	for name := range keelsonOnly {
		children[pid] = "/d/keelson-plugins " + name
		pid++
	}
	if pids, err = pluginPIDs(children, true); err != nil || len(pids) != len(upstreamControllers)+len(keelsonOnly) {
		t.Errorf("every plugin running: %d plugins, err %v", len(pids), err)
	}
	delete(children, 100)
	if _, err := pluginPIDs(children, true); err == nil {
		t.Error("a compared plugin missing: no error")
	}
}

// The shared side's one group process stands for every member.
func TestPluginPIDsOfAGroup(t *testing.T) {
	cmdline := "/d/keelson-plugins group " + strings.ReplaceAll(strings.Replace(sharedGroupFlag(), "=", " ", 1), ",", " ")
	name, members, ok := pluginName(cmdline)
	if !ok || name != "group/"+sharedGroup || len(members) != len(upstreamControllers) {
		t.Fatalf("pluginName of the group process = %q, %d members, %v", name, len(members), ok)
	}
	children := map[int]string{7: cmdline}
	pids, err := pluginPIDs(children, false)
	if err != nil || len(pids) != 1 || pids["group/"+sharedGroup] != 7 {
		t.Errorf("group process: pids %v, err %v", pids, err)
	}
	children[7] = "/d/keelson-plugins group controllers replicaset"
	if _, err := pluginPIDs(children, false); err == nil || !strings.Contains(err.Error(), "deployment") {
		t.Errorf("a group missing members: err %v, want one naming deployment", err)
	}
}

// The control-plane scope counts every child of the server, a process the
// bench does not know by name too, and still fails when a plugin is missing.
func TestEveryChild(t *testing.T) {
	children := map[int]string{1: "/usr/bin/helper --flag"}
	pid := 100
	for _, name := range builtin.Names() {
		children[pid] = "/d/keelson-plugins " + name
		pid++
	}
	pids, err := everyChild(children)
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) != len(children) || pids["helper (pid 1)"] != 1 || pids["replicaset"] == 0 {
		t.Errorf("everyChild = %v, want every one of the %d children", pids, len(children))
	}
	delete(children, 100)
	if _, err := everyChild(children); err == nil {
		t.Error("a built-in plugin missing: no error")
	}
}
