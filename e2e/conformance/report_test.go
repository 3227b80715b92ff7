package conformance

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/keelson/keelson/internal/testimage"
)

const junitSample = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="5" failures="2">
  <testsuite name="Kubernetes e2e suite" tests="5">
    <testcase name="[SynchronizedBeforeSuite]" classname="Kubernetes e2e suite" status="passed" time="1.5"></testcase>
    <testcase name="[It] [sig-node] Pods should get a host IP [NodeConformance] [Conformance]" status="passed" time="4.2"></testcase>
    <testcase name="[It] [sig-apps] Job should run a job to completion [Conformance]" status="failed" time="300">
      <failure message="&#xA;timed out waiting for the condition&#xA;more" type="failed">full text</failure>
    </testcase>
    <testcase name="[It] [sig-cli] Kubectl client should check version [Conformance]" status="timedout" time="60">
      <failure message="" type="timedout">&#xA;  context deadline exceeded</failure>
    </testcase>
    <testcase name="[It] [sig-network] Services should serve a basic endpoint [Conformance]" status="skipped" time="0">
      <skipped message="skipped - no nodes"></skipped>
    </testcase>
    <testcase name="[It] [sig-storage] CSI not focused" status="skipped" time="0"><skipped message=""></skipped></testcase>
  </testsuite>
</testsuites>`

func TestReport(t *testing.T) {
	specs, err := ParseJUnit(strings.NewReader(junitSample), regexp.MustCompile(`\[Conformance\]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 4 {
		t.Fatalf("got %d specs, want the 4 focused ones: %+v", len(specs), specs)
	}
	var buf bytes.Buffer
	if err := WriteReport(&buf, Run{Commit: "abc", Focus: `\[Conformance\]`, Specs: specs, Servers: 1, Agents: 2}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"| sig-node | 1 | 0 | 0 |",
		"| sig-apps | 0 | 1 | 0 |",
		"| sig-cli | 0 | 1 | 0 |",
		"| sig-network | 0 | 0 | 1 |",
		"| **total** | **1** | **2** | **1** |",
		"## Failures that need issue 17",
		"`timed out waiting for the condition`",
		"## Failures in parts that exist",
		"`context deadline exceeded`",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "not focused") {
		t.Errorf("report lists a spec outside the focus:\n%s", out)
	}
}

func TestSmokeFocus(t *testing.T) {
	path := filepath.Join(t.TempDir(), "smoke.txt")
	list := "# comment\n[sig-node] Pods should get a host IP [Conformance] [NodeConformance]\n\n[sig-cli] Kubectl client Kubectl version should check is all data is printed  [Conformance]\n"
	if err := os.WriteFile(path, []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := smokeFocus(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(f)
	if !re.MatchString("[sig-node] Pods should get a host IP [NodeConformance] [Conformance]") {
		t.Errorf("focus %q misses a listed spec", f)
	}
	if re.MatchString("[sig-node] Pods should be updated [NodeConformance] [Conformance]") {
		t.Errorf("focus %q matches a spec not listed", f)
	}
}

// TestImages checks the names the images are imported under and that the
// tarball holds them all, with a stand-in binary for the Go-built ones.
func TestImages(t *testing.T) {
	if _, err := os.Stat(testimage.BusyboxPath); err != nil {
		t.Skip("busybox-static is not installed")
	}
	dir := t.TempDir()
	for _, f := range []string{"localhost.crt", "localhost.key", "kitten.jpg", "nautilus.jpg", "data.json"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := testimage.BusyboxPath
	imgs, err := BuildImages(Binaries{Busybox: bin, Agnhost: bin, SampleAPIServer: bin, Nonewprivs: bin, PorterCerts: dir, KittenHTML: dir, NautilusHTML: dir, Etcd: bin})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "images.tar")
	if err := WriteTarball(path, "10.99.1.1:5000", imgs); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{
		"registry.k8s.io/e2e-test-images/agnhost:2.66.1",
		"registry.k8s.io/e2e-test-images/busybox:1.37.0-2",
		"registry.k8s.io/pause:3.10.2",
		"10.99.1.1:5000/e2e-test-images/nginx:1.28.0-2",
		"10.99.1.1:5000/pause:3.10.2",
		"registry.k8s.io/e2e-test-images/kitten:1.8",
		"10.99.1.1:5000/e2e-test-images/kitten:1.8",
		"registry.k8s.io/e2e-test-images/nautilus:1.8",
		"registry.k8s.io/etcd:3.7.0-0",
		"10.99.1.1:5000/etcd:3.7.0-0",
	} {
		tag, err := name.NewTag(ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		img, err := tarball.ImageFromPath(path, &tag)
		if err != nil {
			t.Errorf("%s not in the tarball: %v", ref, err)
			continue
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(ref, "agnhost") && (len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/agnhost") {
			t.Errorf("%s entrypoint %v, want [/agnhost]", ref, cf.Config.Entrypoint)
		}
	}
	if got := RepoList("h:1"); !strings.Contains(got, "promoterE2eRegistry: h:1/e2e-test-images\n") || !strings.Contains(got, "gcRegistry: h:1\n") {
		t.Errorf("repo list:\n%s", got)
	}
}

// A parallel run's two passes each skip what the other ran: the merged
// report has every spec once, with the outcome of the pass that ran it,
// and keeps both passes' suite-level failures.
func TestMergeSpecs(t *testing.T) {
	parallel := []Spec{
		{Name: "a", SIG: "sig-node", Status: "passed"},
		{Name: "serial", SIG: "sig-apps", Status: "skipped"},
		{Name: "[SynchronizedAfterSuite]", SIG: "suite", Status: "failed"},
	}
	serial := []Spec{
		{Name: "a", SIG: "sig-node", Status: "skipped"},
		{Name: "serial", SIG: "sig-apps", Status: "failed", FirstError: "boom"},
		{Name: "[SynchronizedAfterSuite]", SIG: "suite", Status: "failed"},
	}
	got := MergeSpecs(parallel, serial)
	want := []Spec{parallel[0], serial[1], parallel[2], serial[2]}
	if !slices.Equal(got, want) {
		t.Errorf("merged\n%+v\nwant\n%+v", got, want)
	}
}

func TestParallelSetting(t *testing.T) {
	for v, want := range map[string]int{"": 1, "1": 1, "4": 4} {
		if got, err := parallelSetting(v); err != nil || got != want {
			t.Errorf("PARALLEL=%q: %d, %v; want %d", v, got, err, want)
		}
	}
	for _, v := range []string{"0", "-2", "four", "33"} {
		if _, err := parallelSetting(v); err == nil || !strings.Contains(err.Error(), "PARALLEL") {
			t.Errorf("PARALLEL=%q: %v, want an error naming PARALLEL", v, err)
		}
	}
}
