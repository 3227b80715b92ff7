package conformance

import (
	"archive/tar"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	imageutils "k8s.io/kubernetes/test/utils/image"

	"github.com/keelson/keelson/internal/testimage"
)

// A host tool goes into an image with every library it loads and the
// dynamic loader, so it runs on the static busybox base.
func TestHostToolsCarryTheirLibraries(t *testing.T) {
	tools := map[string]string{}
	for _, m := range []map[string]string{HostTools, glibcDNSTools} {
		for name, src := range m {
			tools[name] = src
		}
	}
	for name, src := range tools {
		if _, err := os.Stat(src); err != nil {
			t.Skipf("%s not installed (apt-get install -y %s)", src, HostToolPackages)
		}
		files, dirs, err := withLibs(map[string]file{"usr/local/bin/" + name: {src: src, mode: 0o755}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var loader, libc bool
		for path := range files {
			loader = loader || strings.Contains(path, "ld-linux")
			libc = libc || strings.HasSuffix(path, "/libc.so.6")
		}
		if !loader || !libc || len(dirs) == 0 {
			t.Errorf("%s: files %v, dirs %v: want the loader, libc and their directories", name, keys(files), dirs)
		}
	}
}

func keys(m map[string]file) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// builtBusybox is the busybox make conformance-bins builds, in
// KEELSON_CONFORMANCE_DIR or this checkout's .conformance/; the test is
// skipped when it has not been built.
func builtBusybox(t *testing.T) string {
	dir := os.Getenv("KEELSON_CONFORMANCE_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", ".conformance")
	}
	path, err := filepath.Abs(filepath.Join(dir, "bin", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Skipf("%s is absent: `make conformance-bins` builds it (set KEELSON_CONFORMANCE_DIR to use another .conformance)", path)
	}
	return path
}

// The ConfigMap and Secret environment specs give a container names that
// are not shell identifiers and read them back with `sh -c env` in the
// busybox image: its sh must pass every one on (Debian's drops them).
func TestBusyboxImageShellKeepsEveryEnvName(t *testing.T) {
	bb := builtBusybox(t)
	dir := t.TempDir()
	for _, f := range []string{"localhost.crt", "localhost.key", "kitten.jpg", "nautilus.jpg", "data.json"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	imgs, err := BuildImages(Binaries{Busybox: bb, Agnhost: bb, SampleAPIServer: bb, Nonewprivs: bb, PorterCerts: dir, KittenHTML: dir, NautilusHTML: dir, Etcd: bb})
	if err != nil {
		t.Fatal(err)
	}
	var img v1.Image
	for _, im := range imgs {
		if im.Path == "busybox:1.37.0-2" {
			img = im.Image
		}
	}
	if img == nil {
		t.Fatal("no busybox:1.37.0-2 among the images")
	}
	files := imageFiles(t, img, "bin/busybox")
	for _, applet := range []string{"bin/sh", "bin/env", "bin/printenv"} {
		if _, ok := files[applet]; !ok {
			t.Errorf("the busybox image has no %s", applet)
		}
	}
	inImage := filepath.Join(dir, "busybox")
	if err := os.WriteFile(inImage, files["bin/busybox"], 0o755); err != nil {
		t.Fatal(err)
	}

	// Names as the ConfigMap and Secret specs "should be consumable via
	// the environment" and "... with various prefixes" make them.
	env := []string{"data-1=value-1", "p-data-1=value-1", "1-data-1=value-2", "$_-data-1=value-3", "#@!data-1=value-4", "ABC_data-1=value-5", "CONFIG_DATA_1=value-6"}
	cmd := exec.Command(inImage, "sh", "-c", "env")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("busybox sh -c env: %v: %s", err, out)
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		lines[l] = true
	}
	var missing []string
	for _, kv := range env {
		if !lines[kv] {
			missing = append(missing, kv)
		}
	}
	if len(missing) > 0 {
		t.Errorf("sh -c env in the busybox image does not print %q; it printed:\n%s", missing, out)
	}
	cmd = exec.Command(inImage, "printenv", "1-data-1")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil || string(out) != "value-2\n" {
		t.Errorf("busybox printenv 1-data-1 = %q, %v; want \"value-2\\n\"", out, err)
	}
}

// imageFiles lists the paths in img's filesystem, with the contents of
// those in read.
func imageFiles(t *testing.T, img v1.Image, read ...string) map[string][]byte {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("reading the image's filesystem: %v", err)
		}
		name := strings.TrimPrefix(h.Name, "/")
		files[name] = nil
		if slices.Contains(read, name) {
			if files[name], err = io.ReadAll(tr); err != nil {
				t.Fatalf("reading %s from the image: %v", name, err)
			}
		}
	}
}

// The kitten image carries what the ImageVolume spec reads through the
// volume (data.json naming kitten.jpg, etc/os-release naming Alpine Linux)
// and the picture itself, and runs agnhost's test-webserver.
func TestKittenImage(t *testing.T) {
	html := t.TempDir()
	jpg := []byte("\xff\xd8\xff\xe0 not really a kitten")
	if err := os.WriteFile(filepath.Join(html, "kitten.jpg"), jpg, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(html, "data.json"), []byte("{\n  \"image\": \"kitten.jpg\"\n}\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	base, err := testimage.Busybox()
	if err != nil {
		t.Skip(err)
	}
	agnhost, err := mutateConfig(base, func(c *v1.Config) { c.Entrypoint, c.Cmd = []string{"/agnhost"}, []string{"pause"} })
	if err != nil {
		t.Fatal(err)
	}
	img, err := pictureImage(agnhost, html, "kitten.jpg")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	tr := tar.NewReader(mutate.Extract(img))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = string(b)
	}
	if !strings.Contains(files["data.json"], "kitten.jpg") || files["kitten.jpg"] != string(jpg) || !strings.Contains(files["etc/os-release"], "Alpine Linux") {
		t.Errorf("data.json %q, kitten.jpg %d bytes, etc/os-release %q", files["data.json"], len(files["kitten.jpg"]), files["etc/os-release"])
	}
	if files["bin/busybox"] == "" {
		t.Error("the base's files are missing")
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if c := cf.Config; strings.Join(c.Entrypoint, " ") != "/agnhost" || strings.Join(c.Cmd, " ") != "test-webserver" {
		t.Errorf("entrypoint %q command %q, want /agnhost test-webserver", c.Entrypoint, c.Cmd)
	}
}

// The kitten, nautilus and etcd images are named as manifest.go names
// imageutils.Kitten, Nautilus and Etcd.
func TestImageNamesAsManifest(t *testing.T) {
	for path, id := range map[string]imageutils.ImageID{kittenPath: imageutils.Kitten, nautilusPath: imageutils.Nautilus, etcdPath: imageutils.Etcd} {
		registry := "promoterE2eRegistry"
		if path == etcdPath {
			registry = "gcEtcdRegistry"
		}
		im := Image{Registry: registry, Path: path}
		if got, want := im.Refs("registry.test")[0], imageutils.GetE2EImage(id); got != want {
			t.Errorf("%s is %s, manifest.go says %s", path, got, want)
		}
	}
}
