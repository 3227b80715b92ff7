package agent

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/snapshots"
	"github.com/moby/sys/mountinfo"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/internal/testimage"
)

// testImageVolume: an image volume (pull policy Always, from the registry)
// shows the image's files read-only, whole and through a subPath; deleting
// the pod unmounts and removes its snapshot view. A volume whose image is
// missing holds back only the container mounting it, with ErrImagePull then
// ImagePullBackOff and an event naming the volume and the image.
func (c *cluster) testImageVolume(t *testing.T) {
	base, err := testimage.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	img, err := testimage.WithFiles(base, map[string]string{
		"data.json":           "{\n  \"image\": \"kitten.jpg\"\n}\n",
		"etc/os-release":      "NAME=\"image volume test\"\n",
		"html/inner/page.txt": "inside the subPath\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := c.registry.Push("kitten:volume", img)
	if err != nil {
		t.Fatal(err)
	}
	ns := c.namespace(t, "imagevolume")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: reader
spec:
  nodeName: `+c.node+`
  volumes:
  - name: volume
    image: {reference: `+ref+`, pullPolicy: Always}
  containers:
  - name: app
    image: `+c.busybox+`
    command: ['sh', '-c', 'sleep 3600']
    volumeMounts:
    - {name: volume, mountPath: /volume}
    - {name: volume, mountPath: /sub, subPath: html/inner}
`)
	p := c.waitPod(t, ns, "reader", 3*time.Minute, "running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	exec := func(args ...string) harness.KubectlResult {
		return c.server.Kubectl(t, append([]string{"exec", "-n", ns, "reader", "-c", "app", "--"}, args...)...)
	}
	if r := exec("cat", "/volume/data.json"); r.ExitCode != 0 || !strings.Contains(r.Stdout, "kitten.jpg") {
		t.Errorf("data.json through the volume: %s", r)
	}
	if r := exec("cat", "/volume/etc/os-release"); !strings.Contains(r.Stdout, "image volume test") {
		t.Errorf("etc/os-release through the volume: %s", r)
	}
	if r := exec("cat", "/sub/page.txt"); r.Stdout != "inside the subPath\n" {
		t.Errorf("page.txt through the subPath: %s", r)
	}
	for _, path := range []string{"/volume/written", "/sub/written"} {
		if r := exec("touch", path); r.ExitCode == 0 || !strings.Contains(r.Stderr, "Read-only file system") {
			t.Errorf("writing %s: %s; want a read-only file system", path, r)
		}
	}
	c.expectEvent(t, ns, "reader", "Pulling", `Pulling image "`+ref+`"`)

	// The view is mounted on the node, below the pod's directory, in
	// containerd's snapshots and the pod's lease.
	viewDir := filepath.Join(config.AgentDir(c.dataDir), "pods", string(p.UID), "volumes", "kubernetes.io~image", "volume")
	if n := mountsUnder(t, viewDir); n == 0 {
		t.Fatalf("no view mounted below %s", viewDir)
	}
	if keys, leases := c.imageViews(t, string(p.UID)); len(keys) == 0 || !leases {
		t.Fatalf("view snapshots %v, lease %v: want the pod's view and lease", keys, leases)
	}

	if err := c.client.CoreV1().Pods(ns).Delete(context.Background(), "reader", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 2*time.Minute, "the pod's view is removed", func() (bool, string) {
		keys, lease := c.imageViews(t, string(p.UID))
		n := mountsUnder(t, viewDir)
		_, statErr := os.Stat(viewDir)
		return len(keys) == 0 && !lease && n == 0 && os.IsNotExist(statErr),
			"snapshots " + strings.Join(keys, ",") + ", lease " + map[bool]string{true: "held", false: "gone"}[lease] +
				", mounts " + strconv.Itoa(n) + ", directory: " + errString(statErr)
	})

	// A missing image holds back only the container mounting it.
	missing := c.registry.Host + "/no-such-kitten:1"
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: missing
spec:
  nodeName: `+c.node+`
  volumes:
  - name: art
    image: {reference: `+missing+`, pullPolicy: IfNotPresent}
  containers:
  - name: mounts-it
    image: `+c.busybox+`
    command: ['sleep', '3600']
    volumeMounts: [{name: art, mountPath: /art}]
  - name: does-not
    image: `+c.busybox+`
    command: ['sleep', '3600']
`)
	c.waitPod(t, ns, "missing", 3*time.Minute, "ImagePullBackOff on mounts-it, does-not running", func(p *v1.Pod) bool {
		waiting := containerStatusOf(p, "mounts-it").State.Waiting
		return waiting != nil && waiting.Reason == "ImagePullBackOff" && containerStatusOf(p, "does-not").State.Running != nil
	})
	c.expectEvent(t, ns, "missing", "Failed", `image volume "art" (image "`+missing+`")`)
	c.expectEvent(t, ns, "missing", "BackOff", `Back-off pulling image "`+missing+`"`)
}

// imageViews lists the agent's containerd snapshots of the pod's image
// views and says whether the pod's view lease exists.
func (c *cluster) imageViews(t *testing.T, uid string) ([]string, bool) {
	t.Helper()
	client, err := containerd.New(config.ContainerdSocket(c.dataDir), containerd.WithDefaultNamespace("keelson"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	var keys []string
	podDir := filepath.Join(config.AgentDir(c.dataDir), "pods", uid) + "/"
	err = client.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if strings.HasPrefix(info.Name, "keelson-image-view:"+podDir) {
			keys = append(keys, info.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := client.LeasesService().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.ID == "keelson-image-views-"+uid {
			return keys, true
		}
	}
	return keys, false
}

// mountsUnder counts the mounts at or below dir in this (the agent's)
// mount namespace.
func mountsUnder(t *testing.T, dir string) int {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	return len(ms)
}

func errString(err error) string {
	if err == nil {
		return "present"
	}
	return err.Error()
}
