package conformance

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keelson/keelson/e2e/ha"
	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/nodeagent"
	"github.com/keelson/keelson/internal/testimage"
	"github.com/keelson/keelson/internal/testnet"
)

// Settings come from the environment `make conformance` sets.
type settings struct {
	dir         string // KEELSON_CONFORMANCE_DIR: e2e.test, bin/, runs/
	focus, skip string
	servers     int
	timeout     string // ginkgo's whole-suite timeout
	// parallel (PARALLEL) is how many e2e.test processes run the specs
	// not labelled Serial, through the ginkgo CLI; the Serial ones run
	// after them in one process. 1: one process runs every spec.
	parallel int
}

func loadSettings(t *testing.T) settings {
	s := settings{
		dir:     os.Getenv("KEELSON_CONFORMANCE_DIR"),
		focus:   os.Getenv("FOCUS"),
		skip:    os.Getenv("SKIP"),
		servers: 1,
		timeout: os.Getenv("E2E_TIMEOUT"),
	}
	if s.dir == "" {
		t.Skip("KEELSON_CONFORMANCE_DIR is not set: `make conformance` builds e2e.test and runs this")
	}
	if s.focus == "" {
		s.focus = `\[Conformance\]`
	}
	if s.timeout == "" {
		s.timeout = "24h"
	}
	if smoke := os.Getenv("SMOKE_LIST"); smoke != "" {
		f, err := smokeFocus(smoke)
		if err != nil {
			t.Fatal(err)
		}
		s.focus = f
	}
	if os.Getenv("HA") == "1" {
		s.servers = 3
	}
	p, err := parallelSetting(os.Getenv("PARALLEL"))
	if err != nil {
		t.Fatal(err)
	}
	s.parallel = p
	return s
}

// parallelSetting reads PARALLEL: empty is 1.
func parallelSetting(v string) (int, error) {
	if v == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 32 {
		return 0, fmt.Errorf("PARALLEL=%q: want a number of e2e.test processes from 1 to 32 (e.g. PARALLEL=4), or unset for one", v)
	}
	return n, nil
}

// smokeFocus turns a file of spec names, one a line ('#' comments), into a
// focus regexp matching exactly those specs. The bracketed labels that end
// a name ("[Conformance] [NodeConformance]") match in any order.
func smokeFocus(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("SMOKE_LIST: %w", err)
	}
	var alts []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			alts = append(alts, regexp.QuoteMeta(trailingLabels.ReplaceAllString(l, ""))+`( \[[^\]]+\])*$`)
		}
	}
	if len(alts) == 0 {
		return "", fmt.Errorf("SMOKE_LIST %s names no spec", path)
	}
	return strings.Join(alts, "|"), nil
}

var trailingLabels = regexp.MustCompile(`( \[[^\]]+\])+$`)

// agentNames are the worker nodes' hosts and Node names.
var agentNames = []string{"a1", "a2"}

// TestConformance starts a cluster on its own network, serves and imports
// the test images, runs e2e.test against it and writes the report.
func TestConformance(t *testing.T) {
	cfg := loadSettings(t)
	nodeagent.Require(t)
	ha.RequireNetns(t)
	e2eBin := filepath.Join(cfg.dir, "e2e.test")
	if _, err := os.Stat(e2eBin); err != nil {
		t.Fatalf("%v (make conformance builds it)", err)
	}
	imgs, err := BuildImages(Binaries{
		Busybox:         filepath.Join(cfg.dir, "bin", "busybox"),
		Agnhost:         filepath.Join(cfg.dir, "bin", "agnhost"),
		SampleAPIServer: filepath.Join(cfg.dir, "bin", "sample-apiserver"),
		Nonewprivs:      filepath.Join(cfg.dir, "bin", "nnp"),
		PorterCerts:     filepath.Join(cfg.dir, "bin", "porter"),
		KittenHTML:      filepath.Join(cfg.dir, "bin", "kitten"),
		NautilusHTML:    filepath.Join(cfg.dir, "bin", "nautilus"),
		Etcd:            filepath.Join(cfg.dir, "bin", "etcd"),
	})
	if err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(cfg.dir, "runs", time.Now().UTC().Format("20060102-150405"))
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c := startCluster(t, cfg, imgs, runDir)
	t.Logf("cluster ready after %s; running e2e.test, log %s", time.Since(start).Round(time.Second), filepath.Join(runDir, "e2e.log"))

	runStart := time.Now()
	passes := runE2E(t, cfg, e2eBin, c, runDir)
	run := Run{
		Commit: os.Getenv("KEELSON_COMMIT"), Focus: cfg.focus, Skip: cfg.skip, Machine: machine(),
		Servers: cfg.servers, Agents: len(agentNames), Parallel: cfg.parallel,
		Started: runStart, Duration: time.Since(runStart), Images: imgs,
	}
	focusRE, skipRE := regexp.MustCompile(cfg.focus), (*regexp.Regexp)(nil)
	if cfg.skip != "" {
		skipRE = regexp.MustCompile(cfg.skip)
	}
	var reports [][]Spec
	for _, p := range passes {
		specs, err := readJUnit(filepath.Join(runDir, "junit_"+p.prefix+"01.xml"), focusRE, skipRE)
		if err != nil {
			t.Fatalf("%v (see %s)", err, filepath.Join(runDir, p.log))
		}
		reports = append(reports, specs)
	}
	run.Specs = MergeSpecs(reports...)
	report := filepath.Join(runDir, "report.md")
	if err := WriteReportFile(report, run); err != nil {
		t.Fatal(err)
	}
	if err := WriteReportFile(filepath.Join(cfg.dir, "report.md"), run); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(report)
	t.Logf("report %s:\n%s", report, b)
}

// cluster is what runE2E needs of the running cluster.
type cluster struct {
	kubeconfig string
	repoList   string
}

// startCluster starts the servers and two agents, each in a namespace on a
// new bridge, an image registry on the bridge address, and waits for both
// Nodes to be Ready. Everything is stopped and removed when the test ends.
func startCluster(t *testing.T, cfg settings, imgs []Image, runDir string) cluster {
	cidr, err := testnet.ClusterCIDR()
	if err != nil {
		t.Fatal(err)
	}
	// Each server runs its own agent, as a control-plane node does: its
	// kube-apiserver reaches pods through the routes that agent programs.
	hc := ha.NewCluster(t, ha.Options{Servers: cfg.servers, APIServer: true, Agent: true, Hosts: agentNames, Args: []string{"--cluster-cidr", cidr}})
	reg, err := testimage.ServeRegistryAt(hc.Net.BridgeIP() + ":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	for _, im := range imgs {
		if _, err := reg.Push(im.RepoPath(), im.Image); err != nil {
			t.Fatal(err)
		}
	}
	repoList := filepath.Join(runDir, "repo-list.yaml")
	if err := os.WriteFile(repoList, []byte(RepoList(reg.Host)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Beside the agents' data dirs (under the temp dir), so it is linked
	// into each, not copied.
	tmp, err := os.MkdirTemp("", "kconf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	tarball := filepath.Join(tmp, "images.tar")
	if err := WriteTarball(tarball, reg.Host, imgs); err != nil {
		t.Fatal(err)
	}

	// The servers' agents import the images from their images directory
	// (polled), under every name the specs use.
	for _, s := range hc.Servers {
		dir := filepath.Join(s.DataDir(), "images")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(tarball, filepath.Join(dir, "conformance.tar")); err != nil {
			t.Fatal(err)
		}
	}
	join := hc.Servers[0]
	tokenFile := hc.AgentTokenFile(t)
	var agents []*nodeagent.Agent
	for _, name := range agentNames {
		h := hc.Net.Host(name)
		a := nodeagent.New(t, nodeagent.Options{Name: name, NetNS: h.NS, Args: []string{
			"--server", "https://" + net.JoinHostPort(join.IP, "6443"),
			"--token-file", tokenFile,
			"--node-ip", h.IP,
			"--kubelet-address", h.IP,
			"--cluster-cidr", cidr,
			"--insecure-registry", reg.Host,
			"--registry-mirror", "registry.k8s.io=http://" + reg.Host,
			"--registry-mirror", "docker.io=http://" + reg.Host,
		}})
		if err := os.Link(tarball, filepath.Join(a.DataDir, "images", "conformance.tar")); err != nil {
			t.Fatal(err)
		}
		a.Start(t)
		agents = append(agents, a)
	}
	// Logs outlive the run (the servers' and agents' dirs do not).
	t.Cleanup(func() {
		for _, s := range hc.Servers {
			copyLogs(t, filepath.Dir(s.DataDir()), "server-*.log", filepath.Join(runDir, "logs", s.Name))
		}
		for _, a := range agents {
			copyLogs(t, a.DataDir, "agent-*.log", filepath.Join(runDir, "logs", a.Name))
		}
	})
	kube := join.Clientset(t)
	for _, name := range agentNames {
		waitNodeReady(t, kube.CoreV1().Nodes(), name)
	}
	for _, s := range hc.Servers {
		waitNodeReady(t, kube.CoreV1().Nodes(), s.Name)
	}
	return cluster{kubeconfig: writeKubeconfig(t, join, runDir), repoList: repoList}
}

func waitNodeReady(t *testing.T, nodes interface {
	Get(context.Context, string, metav1.GetOptions) (*v1.Node, error)
}, name string) {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		n, err := nodes.Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && n.Spec.PodCIDR != "" {
			for _, c := range n.Status.Conditions {
				if c.Type == v1.NodeReady && c.Status == v1.ConditionTrue {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s not Ready with a pod CIDR after 5m: %v", name, err)
		}
		time.Sleep(time.Second)
	}
}

// writeKubeconfig copies the server's admin kubeconfig, pointed at its
// bridge address.
func writeKubeconfig(t *testing.T, s *ha.Server, dir string) string {
	kc, err := clientcmd.LoadFromFile(filepath.Join(s.DataDir(), "admin.kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range kc.Clusters {
		c.Server = "https://" + net.JoinHostPort(s.IP, "6443")
	}
	path := filepath.Join(dir, "admin.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func readJUnit(path string, focus, skip *regexp.Regexp) ([]Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("e2e.test wrote no JUnit report: %w", err)
	}
	defer f.Close()
	return ParseJUnit(f, focus, skip)
}

// pass is one e2e.test invocation of a run: its JUnit report is
// junit_<prefix>01.xml, its output log, both in the run's directory.
type pass struct{ prefix, log string }

// runE2E runs e2e.test with the run's focus, writing its output and JUnit
// report to runDir, and returns the passes it made. A failing spec is the
// report's business, not an error. With cfg.parallel > 1 the ginkgo CLI
// runs the specs not labelled Serial in that many processes, then
// e2e.test runs the Serial ones alone, as upstream's CI does.
func runE2E(t *testing.T, cfg settings, bin string, c cluster, runDir string) []pass {
	kubectl := filepath.Join(runDir, "kubectl")
	script := fmt.Sprintf("#!/bin/sh\nexec %s kubectl \"$@\"\n", strconv.Quote(harness.KeelsonBin(t)))
	if err := os.WriteFile(kubectl, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	e2eArgs := func(prefix string) []string {
		return []string{
			"--kubeconfig=" + c.kubeconfig,
			"--provider=skeleton",
			"--kubectl-path=" + kubectl,
			"--report-dir=" + runDir,
			"--report-prefix=" + prefix,
			"--dump-logs-on-failure=false",
		}
	}
	// ginkgo's own flags, as e2e.test takes them (prefix "ginkgo.") or as
	// the ginkgo CLI does (prefix "").
	ginkgoArgs := func(prefix, labels string) []string {
		a := []string{"--" + prefix + "focus=" + cfg.focus, "--" + prefix + "timeout=" + cfg.timeout, "--" + prefix + "no-color", "--" + prefix + "v"}
		if cfg.skip != "" {
			a = append(a, "--"+prefix+"skip="+cfg.skip)
		}
		if labels != "" {
			a = append(a, "--"+prefix+"label-filter="+labels)
		}
		return a
	}
	if cfg.parallel <= 1 {
		runPass(t, c, runDir, "e2e.log", bin, append(e2eArgs(""), ginkgoArgs("ginkgo.", "")...))
		return []pass{{prefix: "", log: "e2e.log"}}
	}
	ginkgoBin := filepath.Join(cfg.dir, "bin", "ginkgo")
	args := append([]string{"run", "--procs=" + strconv.Itoa(cfg.parallel)}, ginkgoArgs("", "!Serial")...)
	args = append(append(args, bin, "--"), e2eArgs("parallel_")...)
	runPass(t, c, runDir, "e2e.log", ginkgoBin, args)
	runPass(t, c, runDir, "e2e-serial.log", bin, append(e2eArgs("serial_"), ginkgoArgs("ginkgo.", "Serial")...))
	return []pass{{prefix: "parallel_", log: "e2e.log"}, {prefix: "serial_", log: "e2e-serial.log"}}
}

// runPass runs one e2e.test invocation (bin is e2e.test or the ginkgo CLI)
// with its output in runDir/log.
func runPass(t *testing.T, c cluster, runDir, log, bin string, args []string) {
	logf, err := os.Create(filepath.Join(runDir, log))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = runDir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "KUBE_TEST_REPO_LIST="+c.repoList, "KUBECONFIG="+c.kubeconfig)
	err = cmd.Run()
	t.Logf("%s exited: %v (log %s)", filepath.Base(bin), err, log)
}

func copyLogs(t *testing.T, dir, pattern, to string) {
	files, _ := filepath.Glob(filepath.Join(dir, pattern))
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Log(err)
		return
	}
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			_ = os.WriteFile(filepath.Join(to, filepath.Base(f)), b, 0o644)
		}
	}
}

// machine describes this host for the report.
func machine() string {
	host, _ := os.Hostname()
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			if kb, err := strconv.Atoi(f[1]); err == nil {
				mem = fmt.Sprintf(", %.1f GiB RAM", float64(kb)/(1<<20))
			}
		}
	}
	return fmt.Sprintf("%s, %d CPUs%s, %s/%s, shared with other jobs", host, runtime.NumCPU(), mem, runtime.GOOS, runtime.GOARCH)
}
