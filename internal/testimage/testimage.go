// Package testimage builds container images for tests and benchmarks from
// a static busybox on the host (Debian's busybox-static, or another static
// build), so that nothing is downloaded: as a docker-save tarball to
// import, or served by an in-process registry to pull from.
package testimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	goruntime "runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BusyboxPath is where Debian's busybox-static installs the binary.
const BusyboxPath = "/bin/busybox"

// Busybox returns an image whose root filesystem holds /bin/busybox, a link
// per applet in /bin, /etc/passwd and /etc/group (root and nobody), /tmp and
// /root. Its command is "sh".
func Busybox() (v1.Image, error) {
	if _, err := os.Stat(BusyboxPath); err != nil {
		return nil, fmt.Errorf("testimage: %w (install busybox-static)", err)
	}
	return BusyboxFrom(BusyboxPath)
}

// BusyboxFrom is Busybox with the static busybox binary at path (one built
// from upstream's source, say) in place of Debian's.
func BusyboxFrom(path string) (v1.Image, error) {
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("testimage: busybox: %w", err)
	}
	out, err := exec.Command(path, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("testimage: listing the applets of %s: %w", path, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(0, 0)
	dir := func(p string, mode int64) {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: mode, ModTime: mtime})
	}
	file := func(p string, mode int64, data []byte) {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(data)), ModTime: mtime})
		_, _ = tw.Write(data)
	}
	for _, d := range []string{"bin", "etc", "root", "proc", "sys", "dev", "var", "usr", "usr/bin"} {
		dir(d, 0o755)
	}
	dir("tmp", 0o1777)
	file("bin/busybox", 0o755, bin)
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777, ModTime: mtime})
	}
	file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n"))
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("testimage: layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", goruntime.GOARCH
	cf.Created = v1.Time{Time: mtime}
	cf.Config.Cmd = []string{"sh"}
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	return mutate.ConfigFile(img, cf)
}

// File is one entry of a layer: a regular file of Data, or a symlink to
// Link.
type File struct {
	Data []byte
	Link string
	Mode int64
}

// WithLayer returns base with one more layer: the directories dirs (in the
// order given, parents first) and files, by path in the image, written in
// path order with the epoch as their time, so the same input gives the
// same layer.
func WithLayer(base v1.Image, dirs []string, files map[string]File) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(0, 0)
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: mtime}); err != nil {
			return nil, err
		}
	}
	for _, n := range slices.Sorted(maps.Keys(files)) {
		f := files[n]
		if f.Link != "" {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: n, Linkname: f.Link, Mode: 0o777, ModTime: mtime}); err != nil {
				return nil, err
			}
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: f.Mode, Size: int64(len(f.Data)), ModTime: mtime}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return nil, fmt.Errorf("testimage: layer: %w", err)
	}
	return mutate.AppendLayers(base, layer)
}

// WithFiles returns base with one more layer holding files (path in the
// image: content, mode 0644) and their parent directories, e.g. an image
// volume's content.
func WithFiles(base v1.Image, files map[string]string) (v1.Image, error) {
	dirs := map[string]bool{}
	entries := make(map[string]File, len(files))
	for n, data := range files {
		entries[n] = File{Data: []byte(data), Mode: 0o644}
		for d := path.Dir(n); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	// Sorted, a directory comes before those below it.
	return WithLayer(base, slices.Sorted(maps.Keys(dirs)), entries)
}

// WriteTarball writes img, named ref, as a docker-save tarball at path.
func WriteTarball(path, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("testimage: %w", err)
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		return fmt.Errorf("testimage: writing %s: %w", path, err)
	}
	return nil
}

// Registry is an in-process OCI registry on a loopback port.
type Registry struct {
	// Host is host:port, the registry part of image references.
	Host string
	srv  *http.Server
}

// ServeRegistry starts a registry on 127.0.0.1.
func ServeRegistry() (*Registry, error) { return ServeRegistryAt("127.0.0.1:0") }

// ServeRegistryAt starts a registry listening on addr (host:port, port 0
// for any free one), e.g. a test network's bridge address that nodes in
// network namespaces reach.
func ServeRegistryAt(addr string) (*Registry, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("testimage: %w", err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return &Registry{Host: l.Addr().String(), srv: srv}, nil
}

// Push stores img in the registry as repo:tag ("busybox:test") and returns
// its full reference.
func (r *Registry) Push(repoTag string, img v1.Image) (string, error) {
	ref := r.Host + "/" + repoTag
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		return "", fmt.Errorf("testimage: %w", err)
	}
	if err := remote.Write(tag, img); err != nil {
		return "", fmt.Errorf("testimage: pushing %s: %w", ref, err)
	}
	return ref, nil
}

// Close stops the registry.
func (r *Registry) Close() error { return r.srv.Close() }
