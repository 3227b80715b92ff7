package conformance

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/keelson/keelson/internal/testimage"
)

// Binaries are the programs built from source that go into the images:
// the Go ones in conformance/e2ebin, busybox by conformance/build-busybox.sh.
type Binaries struct {
	// Busybox is upstream busybox 1.37.0, static: every image's base.
	// Debian's busybox-static will not do for the busybox image: its ash
	// drops environment names that are not shell identifiers ("data-1"),
	// which the ConfigMap and Secret environment specs print with
	// `sh -c env`.
	Busybox         string
	Agnhost         string // k8s.io/kubernetes/test/images/agnhost
	SampleAPIServer string // k8s.io/sample-apiserver
	Nonewprivs      string // k8s.io/kubernetes/test/images/nonewprivs (nnp)
	// PorterCerts is test/images/agnhost/porter, whose localhost.crt and
	// localhost.key agnhost's image carries at /.
	PorterCerts string
	// KittenHTML is test/images/kitten/html, whose kitten.jpg and
	// data.json the kitten image carries at /.
	KittenHTML string
	// NautilusHTML is test/images/nautilus/html (nautilus.jpg and
	// data.json), for the nautilus image.
	NautilusHTML string
	// Etcd is the etcd 3.7.0 server (bench/etcdref), static: the
	// Aggregator spec runs it beside sample-apiserver.
	Etcd string
}

// Image is one image the specs ask for, by its repository path below a
// registry (as test/utils/image/manifest.go at v1.37.2 names it).
type Image struct {
	// Registry is the key of the registry in KUBE_TEST_REPO_LIST
	// ("promoterE2eRegistry", "gcRegistry") and Upstream its default.
	Registry, Upstream string
	// Path is "agnhost:2.66.1" or "pause:3.10.2", below the registry.
	Path string
	// StandIn says why the image is not what upstream builds, if it is not.
	StandIn string
	Image   v1.Image
}

// registryDefaults are manifest.go's registries that images here live in.
var registryDefaults = map[string]string{
	"promoterE2eRegistry": "registry.k8s.io/e2e-test-images",
	"gcRegistry":          "registry.k8s.io",
	"gcEtcdRegistry":      "registry.k8s.io",
}

// nginxStandIn says what the nginx images are.
const nginxStandIn = "busybox httpd serving /usr/share/nginx/html on port 80 (Debian's nginx needs its shared libraries assembled; not done yet)"

// BuildImages assembles every image of the run from the given binaries on
// one busybox base. Layers are shared, so the images together cost little
// more than their largest binary.
func BuildImages(bins Binaries) ([]Image, error) {
	if bins.Busybox == "" {
		return nil, fmt.Errorf("conformance images: Binaries.Busybox is empty: give the busybox that make conformance-bins builds (.conformance/bin/busybox)")
	}
	// The busybox image is upstream's; agnhost and nonewprivs are alpine
	// upstream, whose sh is busybox's ash too, so the rest share its base.
	base, err := testimage.BusyboxFrom(bins.Busybox)
	if err != nil {
		return nil, fmt.Errorf("conformance images: %w (make conformance-bins builds it)", err)
	}
	agnhost, err := agnhostImage(base, bins)
	if err != nil {
		return nil, err
	}
	pause, err := layered(base, nil, map[string]file{"pause": {src: bins.Agnhost, mode: 0o755}},
		func(c *v1.Config) { c.Entrypoint, c.Cmd = []string{"/pause"}, []string{"pause"} })
	if err != nil {
		return nil, err
	}
	nonroot, err := mutateConfig(base, func(c *v1.Config) { c.User = "1234" })
	if err != nil {
		return nil, err
	}
	nnp, err := layered(base, []string{"usr/local", "usr/local/bin"}, map[string]file{"usr/local/bin/nnp": {src: bins.Nonewprivs, mode: 0o4755}},
		func(c *v1.Config) { c.Cmd = []string{"nnp"} })
	if err != nil {
		return nil, err
	}
	apiserver, err := layered(base, nil, map[string]file{"sample-apiserver": {src: bins.SampleAPIServer, mode: 0o755}},
		func(c *v1.Config) { c.Entrypoint, c.Cmd = []string{"/sample-apiserver"}, nil })
	if err != nil {
		return nil, err
	}
	etcd, err := layered(base, []string{"usr/local", "usr/local/bin"}, map[string]file{"usr/local/bin/etcd": {src: bins.Etcd, mode: 0o755}},
		func(c *v1.Config) { c.Entrypoint, c.Cmd = nil, []string{"/usr/local/bin/etcd"} })
	if err != nil {
		return nil, err
	}
	nginx, err := layered(base, []string{"usr/share", "usr/share/nginx", "usr/share/nginx/html"},
		map[string]file{"usr/share/nginx/html/index.html": {data: []byte("<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head><body><h1>Welcome to nginx!</h1></body></html>\n"), mode: 0o644}},
		func(c *v1.Config) {
			c.Entrypoint, c.Cmd = []string{"httpd", "-f", "-v", "-p", "80", "-h", "/usr/share/nginx/html"}, nil
			c.ExposedPorts = map[string]struct{}{"80/tcp": {}}
		})
	if err != nil {
		return nil, err
	}
	glibcDNS, err := glibcDNSImage(base)
	if err != nil {
		return nil, err
	}
	kitten, err := pictureImage(agnhost, bins.KittenHTML, "kitten.jpg")
	if err != nil {
		return nil, err
	}
	nautilus, err := pictureImage(agnhost, bins.NautilusHTML, "nautilus.jpg")
	if err != nil {
		return nil, err
	}
	e2e := "promoterE2eRegistry"
	return []Image{
		{Registry: e2e, Path: "agnhost:2.66.1", Image: agnhost, StandIn: agnhostStandIn},
		{Registry: e2e, Path: "agnhost:2.55", Image: agnhost, StandIn: "agnhost built from v1.37.2's sources (2.66.1), named 2.55; " + agnhostStandIn},
		{Registry: e2e, Path: "busybox:1.37.0-2", Image: base, StandIn: busyboxStandIn},
		{Registry: e2e, Path: "nonroot:1.5", Image: nonroot, StandIn: "busybox with USER 1234 (upstream: debian-base)"},
		{Registry: e2e, Path: "nonewprivs:1.4", Image: nnp},
		{Registry: e2e, Path: "sample-apiserver:1.29.2", Image: apiserver, StandIn: "k8s.io/sample-apiserver v0.37.2 on busybox"},
		{Registry: e2e, Path: "nginx:1.27.0-2", Image: nginx, StandIn: nginxStandIn},
		{Registry: e2e, Path: "nginx:1.28.0-2", Image: nginx, StandIn: nginxStandIn},
		{Registry: e2e, Path: "glibc-dns-testing:2.1.1", Image: glibcDNS, StandIn: glibcDNSStandIn},
		{Registry: e2e, Path: kittenPath, Image: kitten, StandIn: pictureStandIn("kitten")},
		{Registry: e2e, Path: nautilusPath, Image: nautilus, StandIn: pictureStandIn("nautilus")},
		{Registry: "gcRegistry", Path: "pause:3.10.2", Image: pause, StandIn: "agnhost's pause subcommand"},
		{Registry: "gcEtcdRegistry", Path: etcdPath, Image: etcd, StandIn: "the etcd 3.7.0 server from the Go module proxy (bench/etcdref) at /usr/local/bin/etcd on busybox: no etcdctl, etcdutl or migrate (upstream: distroless with those)"},
	}, nil
}

// busyboxStandIn says how the busybox image differs from the docker
// library's busybox:1.37.0 that upstream's is.
const busyboxStandIn = "busybox 1.37.0 built from upstream's source like the docker library's (defconfig with its changes), but static, with this kit's /etc/passwd and /etc/group and applets as symlinks: no getconf, glibc libraries, /etc/localtime or /etc/shadow (upstream: the docker library's busybox:1.37.0)"

const glibcDNSStandIn = "busybox with Debian's dash as /bin/sh, dig and glibc's getent with their libraries: no coredns (upstream: debian-base with dnsutils and coredns)"

// glibcDNSImage is the DNS specs' glibc querier: they resolve every name
// with dig and with getent through glibc's resolver (beside agnhost's,
// which upstream builds on musl), from a shell loop.
func glibcDNSImage(base v1.Image) (v1.Image, error) {
	files := map[string]file{
		"bin/sh":            {src: hostShell, mode: 0o755},
		"etc/nsswitch.conf": {data: []byte(nsswitch), mode: 0o644},
	}
	if err := addHostTools(files, "glibc-dns-testing", glibcDNSTools); err != nil {
		return nil, err
	}
	return layered(base, []string{"usr/local", "usr/local/bin"}, files, func(c *v1.Config) {
		c.Entrypoint, c.Cmd = nil, []string{"sh"}
	})
}

// glibcDNSTools are the glibc querier's programs from this host (getent is
// libc-bin's, an essential package).
var glibcDNSTools = map[string]string{"dig": "/usr/bin/dig", "getent": "/usr/bin/getent"}

// nsswitch makes glibc read the pod's /etc/hosts, then ask the cluster DNS.
const nsswitch = "hosts: files dns\n"

const agnhostStandIn = "agnhost on busybox with Debian's dash as /bin/sh, curl, nc (OpenBSD), dig and getent (glibc's, where upstream's is musl's): no iperf, socat, coredns or fake registry data (upstream: alpine with those)"

// etcdPath is manifest.go's etcd (imageutils.Etcd).
const etcdPath = "etcd:3.7.0-0"

// kittenPath and nautilusPath are manifest.go's kitten and nautilus
// (imageutils.Kitten, imageutils.Nautilus).
const (
	kittenPath   = "kitten:1.8"
	nautilusPath = "nautilus:1.8"
)

// pictureStandIn says how the kitten or nautilus image differs from
// upstream's test/images/<name>.
func pictureStandIn(name string) string {
	return "agnhost's stand-in with upstream's " + name + ".jpg and data.json (v1.37.2's test/images/" + name + ") and, since that base is busybox-static and not Alpine, Alpine 3.21's /etc/os-release text, which upstream's image has from its alpine base (the ImageVolume spec reads kitten's)"
}

// alpineOSRelease is the /etc/os-release of alpine:3.21, the base of
// v1.37.2's agnhost and so of kitten, without its patch release.
const alpineOSRelease = `NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.21
PRETTY_NAME="Alpine Linux v3.21"
HOME_URL="https://alpinelinux.org/"
BUG_REPORT_URL="https://gitlab.alpinelinux.org/alpine/aports/-/issues"
`

// pictureImage is test/images/kitten or nautilus as their Dockerfiles
// build them: agnhost with the picture (jpg) and data.json from html at /,
// command test-webserver (agnhost's entrypoint kept). Image volume specs
// mount kitten and read data.json and etc/os-release; kubectl's Update
// Demo serves nautilus's data.json.
func pictureImage(agnhost v1.Image, html, jpg string) (v1.Image, error) {
	files := map[string]file{
		jpg:              {src: filepath.Join(html, jpg), mode: 0o644},
		"data.json":      {src: filepath.Join(html, "data.json"), mode: 0o644},
		"etc/os-release": {data: []byte(alpineOSRelease), mode: 0o644},
	}
	return layered(agnhost, nil, files, func(c *v1.Config) { c.Cmd = []string{"test-webserver"} })
}

// HostTools are the programs, by name in the image, that agnhost carries
// from this host; HostToolPackages installs them.
var HostTools = map[string]string{"curl": "/usr/bin/curl", "nc": "/bin/nc.openbsd", "dig": "/usr/bin/dig", "getent": "/usr/bin/getent"}

// hostShell is agnhost's /bin/sh (Debian's dash, an essential package).
const hostShell = "/bin/dash"

// HostToolPackages are the Debian packages of HostTools.
const HostToolPackages = "curl netcat-openbsd bind9-dnsutils"

// agnhostImage is agnhost as its Dockerfile lays it out: /agnhost (and
// /agnhost-2), porter's certificates, /uploads, a user and a group defined
// in the image; entrypoint /agnhost, command pause.
func agnhostImage(base v1.Image, bins Binaries) (v1.Image, error) {
	passwd := "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nuser-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n"
	group := "root:x:0:\nnogroup:x:65534:\nuser-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n"
	files := map[string]file{
		"agnhost":       {src: bins.Agnhost, mode: 0o755},
		"agnhost-2":     {link: "agnhost"},
		"localhost.crt": {src: filepath.Join(bins.PorterCerts, "localhost.crt"), mode: 0o644},
		"localhost.key": {src: filepath.Join(bins.PorterCerts, "localhost.key"), mode: 0o644},
		"etc/passwd":    {data: []byte(passwd), mode: 0o644},
		"etc/group":     {data: []byte(group), mode: 0o644},
		// getent reads the pod's /etc/hosts, then asks the cluster DNS.
		"etc/nsswitch.conf": {data: []byte(nsswitch), mode: 0o644},
	}
	// The network specs run curl, nc, dig and getent inside agnhost
	// (upstream's is alpine with those; the DNS specs' "musl" lookups
	// use its getent): Debian's, with the libraries ldd names, ahead of
	// busybox's applets on PATH (busybox nc lacks -W, Debian's also -v, -z
	// and -u; busybox has no getent). agnhost gets nsswitch.conf with them.
	if err := addHostTools(files, "agnhost", HostTools); err != nil {
		return nil, err
	}
	// The specs' `sh -c "nc -v ..."` must reach the nc above, so /bin/sh
	// is Debian's dash, which looks on PATH and finds busybox's applets
	// through their /bin links. (It came in when the base was Debian's
	// busybox, whose sh ran its own applets first; upstream's defconfig
	// sh looks on PATH too, but the network specs have passed with dash
	// and have not been run with busybox's sh here.)
	files["bin/sh"] = file{src: hostShell, mode: 0o755}
	return layered(base, []string{"uploads", "home", "home/user-defined-in-image", "usr/local", "usr/local/bin"}, files, func(c *v1.Config) {
		c.Entrypoint, c.Cmd = []string{"/agnhost"}, []string{"pause"}
		c.ExposedPorts = map[string]struct{}{"80/tcp": {}, "8080/tcp": {}, "8081/tcp": {}, "9376/tcp": {}, "5000/tcp": {}}
	})
}

// addHostTools puts this host's programs tools (name in the image: path
// here) into files under /usr/local/bin of image; layered adds their
// libraries.
func addHostTools(files map[string]file, image string, tools map[string]string) error {
	for name, src := range tools {
		if _, err := os.Stat(src); err != nil {
			return fmt.Errorf("%s needs %s from this host: %w (apt-get install -y %s)", image, src, err, HostToolPackages)
		}
		files["usr/local/bin/"+name] = file{src: src, mode: 0o755}
	}
	return nil
}

// file is one entry of a layer: a copy of src, literal data, or a symlink.
type file struct {
	src  string
	data []byte
	link string
	mode int64
}

// layered adds one layer with dirs and files on top of base and edits the
// image configuration. The shared libraries the binaries among files link
// (they are built with cgo, like the rest of the project, so they share its
// build cache) come from this Debian host, at the paths ldd names.
func layered(base v1.Image, dirs []string, files map[string]file, edit func(*v1.Config)) (v1.Image, error) {
	files, dirs, err := withLibs(files, dirs)
	if err != nil {
		return nil, err
	}
	entries := make(map[string]testimage.File, len(files))
	for n, f := range files {
		data := f.data
		if f.src != "" {
			b, err := os.ReadFile(f.src)
			if err != nil {
				return nil, fmt.Errorf("image file %s: %w (run make conformance-bins)", n, err)
			}
			data = b
		}
		entries[n] = testimage.File{Data: data, Link: f.link, Mode: f.mode}
	}
	img, err := testimage.WithLayer(base, dirs, entries)
	if err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	return mutateConfig(img, edit)
}

// withLibs adds to files the shared libraries (and dynamic loader) that the
// binaries among them need, and their directories to dirs.
func withLibs(files map[string]file, dirs []string) (map[string]file, []string, error) {
	out := map[string]file{}
	for n, f := range files {
		out[n] = f
	}
	seenDir := map[string]bool{}
	for _, d := range dirs {
		seenDir[d] = true
	}
	for _, f := range files {
		if f.src == "" || f.mode&0o111 == 0 {
			continue
		}
		libs, err := sharedLibs(f.src)
		if err != nil {
			return nil, nil, err
		}
		for _, l := range libs {
			rel := strings.TrimPrefix(l, "/")
			if _, ok := out[rel]; ok {
				continue
			}
			out[rel] = file{src: l, mode: 0o755}
			for d := filepath.Dir(rel); d != "." && !seenDir[d]; d = filepath.Dir(d) {
				seenDir[d] = true
			}
		}
	}
	dirs = dirs[:0:0]
	for d := range seenDir {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs) // parents before children
	return out, dirs, nil
}

// sharedLibs lists the absolute paths of the libraries ldd reports for a
// binary; none for a static one.
func sharedLibs(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %w: %s", bin, err, out)
	}
	var libs []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0])
		}
	}
	return libs, nil
}

func mutateConfig(img v1.Image, edit func(*v1.Config)) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	edit(&cf.Config)
	return mutate.ConfigFile(img, cf)
}

// Refs are the names an image is known by: upstream's
// (registry.k8s.io/...) and the mapped one on the run's registry.
func (im Image) Refs(registryHost string) []string {
	sub := ""
	if im.Registry == "promoterE2eRegistry" {
		sub = "/e2e-test-images"
	}
	return []string{registryDefaults[im.Registry] + "/" + im.Path, registryHost + sub + "/" + im.Path}
}

// RepoPath is the image's path on the run's registry: the same below the
// host as upstream's, so the registry also serves as a mirror of
// registry.k8s.io.
func (im Image) RepoPath() string {
	if im.Registry == "promoterE2eRegistry" {
		return "e2e-test-images/" + im.Path
	}
	return im.Path
}

// WriteTarball writes every image under every name into one docker-save
// tarball (shared layers once), for the agents' images directories.
func WriteTarball(path, registryHost string, imgs []Image) error {
	refs := map[name.Reference]v1.Image{}
	for _, im := range imgs {
		for _, r := range im.Refs(registryHost) {
			tag, err := name.NewTag(r, name.Insecure)
			if err != nil {
				return fmt.Errorf("image name %s: %w", r, err)
			}
			refs[tag] = im.Image
		}
	}
	if err := tarball.MultiRefWriteToFile(path, refs); err != nil {
		return fmt.Errorf("writing images to %s: %w", path, err)
	}
	return nil
}

// RepoList is the KUBE_TEST_REPO_LIST file mapping manifest.go's
// registries to the run's registry.
func RepoList(registryHost string) string {
	return fmt.Sprintf("promoterE2eRegistry: %[1]s/e2e-test-images\ngcRegistry: %[1]s\ngcEtcdRegistry: %[1]s\nbuildImageRegistry: %[1]s/build-image\nsigStorageRegistry: %[1]s/sig-storage\ndockerLibraryRegistry: %[1]s/library\ncloudProviderGcpRegistry: %[1]s/cloud-provider-gcp\n", registryHost)
}
