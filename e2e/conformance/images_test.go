package conformance

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
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
	img, err := kittenImage(agnhost, html)
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

// The kitten image is named as manifest.go names imageutils.Kitten.
func TestKittenNamedAsManifest(t *testing.T) {
	im := Image{Registry: "promoterE2eRegistry", Path: kittenPath}
	if got, want := im.Refs("registry.test")[0], imageutils.GetE2EImage(imageutils.Kitten); got != want {
		t.Errorf("kitten is %s, manifest.go says %s", got, want)
	}
}
