package runtime

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/archive/compression"
	"github.com/containerd/containerd/errdefs"
	dockerremote "github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// NormalizeImage returns the full reference of an image name as Kubernetes
// understands it: "busybox" is "docker.io/library/busybox:latest".
func NormalizeImage(name string) (string, error) {
	named, err := reference.ParseDockerRef(name)
	if err != nil {
		return "", fmt.Errorf("invalid image name %q: %w", name, err)
	}
	return named.String(), nil
}

// Credentials returns the user name and password (or identity token as
// password with an empty user) for a registry host; empty for anonymous.
type Credentials func(host string) (user, secret string, err error)

// Image is an image present on the node.
type Image struct {
	Names []string // every reference naming the same content
	Ref   string   // name@digest of the first name
	Size  int64    // bytes, compressed content
}

// HasImage reports whether ref (normalized) is present and unpacked.
func (r *Runtime) HasImage(ctx context.Context, ref string) (bool, error) {
	ctx = r.ns(ctx)
	img, err := r.client.GetImage(ctx, ref)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("runtime: image %s: %w", ref, err)
	}
	ok, err := img.IsUnpacked(ctx, r.opts.Snapshotter)
	if err != nil {
		return false, fmt.Errorf("runtime: image %s: %w", ref, err)
	}
	return ok, nil
}

// Pull fetches ref (normalized) from its registry or a configured mirror
// and unpacks it. It returns the image's size (its compressed content, as
// the CRI reports an image's size; 0 if unknown).
func (r *Runtime) Pull(ctx context.Context, ref string, creds Credentials) (int64, error) {
	ctx = r.ns(ctx)
	resolver := dockerremote.NewResolver(dockerremote.ResolverOptions{Hosts: r.registryHosts(creds)})
	start := time.Now()
	img, err := r.client.Pull(ctx, ref,
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(r.opts.Snapshotter),
		containerd.WithResolver(resolver),
	)
	if err != nil {
		return 0, fmt.Errorf("pulling %s: %w", ref, err)
	}
	r.log.Info("pulled image", "image", ref, "digest", img.Target().Digest, "elapsed", time.Since(start).Round(time.Millisecond))
	size, err := img.Size(ctx)
	if err != nil {
		return 0, nil // pulled; its size is only for metrics
	}
	return size, nil
}

// Import loads every image of a tarball (docker save or OCI layout, possibly
// gzip- or zstd-compressed) and unpacks it. It returns the images' names.
func (r *Runtime) Import(ctx context.Context, rd io.Reader) ([]string, error) {
	ctx = r.ns(ctx)
	ds, err := compression.DecompressStream(rd)
	if err != nil {
		return nil, fmt.Errorf("runtime: reading image archive: %w", err)
	}
	defer ds.Close()
	imgs, err := r.client.Import(ctx, ds, containerd.WithImportPlatform(platformMatcher()))
	if err != nil {
		return nil, fmt.Errorf("runtime: importing image archive: %w", err)
	}
	var names []string
	for _, i := range imgs {
		img := containerd.NewImageWithPlatform(r.client, i, platformMatcher())
		if err := img.Unpack(ctx, r.opts.Snapshotter); err != nil {
			return names, fmt.Errorf("runtime: unpacking %s: %w", i.Name, err)
		}
		names = append(names, i.Name)
	}
	if len(names) == 0 {
		return nil, errors.New("runtime: the archive holds no named image")
	}
	return names, nil
}

// Images lists the images present, grouped by content.
func (r *Runtime) Images(ctx context.Context) ([]Image, error) {
	ctx = r.ns(ctx)
	list, err := r.client.ImageService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("runtime: listing images: %w", err)
	}
	byDigest := map[string]*Image{}
	var order []string
	for _, i := range list {
		d := i.Target.Digest.String()
		img, ok := byDigest[d]
		if !ok {
			ci := containerd.NewImageWithPlatform(r.client, i, platformMatcher())
			size, err := ci.Size(ctx)
			if err != nil {
				continue // content being garbage-collected
			}
			img = &Image{Ref: imageRef(ci), Size: size}
			byDigest[d] = img
			order = append(order, d)
		}
		img.Names = append(img.Names, i.Name)
	}
	out := make([]Image, 0, len(order))
	for _, d := range order {
		out = append(out, *byDigest[d])
	}
	return out, nil
}

// ImageConfig is the part of an image's configuration the agent reads.
type ImageConfig struct {
	Entrypoint, Cmd []string
	StopSignal      string
	User            string
}

// ImageConfigOf returns the configuration of a present image.
func (r *Runtime) ImageConfigOf(ctx context.Context, ref string) (ImageConfig, error) {
	ctx = r.ns(ctx)
	img, err := r.client.GetImage(ctx, ref)
	if err != nil {
		return ImageConfig{}, fmt.Errorf("runtime: image %s: %w", ref, err)
	}
	cfg, err := imageConfig(ctx, img)
	if err != nil {
		return ImageConfig{}, err
	}
	return ImageConfig{Entrypoint: cfg.Entrypoint, Cmd: cfg.Cmd, StopSignal: cfg.StopSignal, User: cfg.User}, nil
}

func imageConfig(ctx context.Context, img containerd.Image) (ocispec.ImageConfig, error) {
	spec, err := img.Spec(ctx)
	if err != nil {
		return ocispec.ImageConfig{}, fmt.Errorf("runtime: configuration of image %s: %w", img.Name(), err)
	}
	return spec.Config, nil
}

// registryHosts turns the registry configuration into containerd's host
// list for a registry: its mirrors in order, then the registry itself. An
// insecure registry is tried over HTTPS without verification, then HTTP.
func (r *Runtime) registryHosts(creds Credentials) dockerremote.RegistryHosts {
	return func(host string) ([]dockerremote.RegistryHost, error) {
		cfg := r.opts.Registries[host]
		authorizer := dockerremote.NewDockerAuthorizer(dockerremote.WithAuthCreds(func(h string) (string, string, error) {
			if creds == nil {
				return "", "", nil
			}
			return creds(h)
		}))
		var hosts []dockerremote.RegistryHost
		client := func(insecure bool) *http.Client {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.Proxy = http.ProxyFromEnvironment
			if insecure {
				t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the operator marked the registry insecure
			}
			return &http.Client{Transport: t}
		}
		for _, m := range cfg.Mirrors {
			u, err := url.Parse(m)
			if err != nil {
				return nil, fmt.Errorf("registry mirror %q: %w", m, err)
			}
			path := strings.TrimSuffix(u.Path, "/")
			if path == "" {
				path = "/v2"
			}
			hosts = append(hosts, dockerremote.RegistryHost{
				Client: client(cfg.Insecure), Authorizer: authorizer, Host: u.Host, Scheme: u.Scheme, Path: path,
				Capabilities: dockerremote.HostCapabilityPull | dockerremote.HostCapabilityResolve,
			})
		}
		endpoint := host
		if host == "docker.io" {
			endpoint = "registry-1.docker.io"
		}
		all := dockerremote.HostCapabilityPull | dockerremote.HostCapabilityResolve | dockerremote.HostCapabilityPush
		if cfg.Insecure {
			hosts = append(hosts,
				dockerremote.RegistryHost{Client: client(true), Authorizer: authorizer, Host: endpoint, Scheme: "https", Path: "/v2", Capabilities: all},
				dockerremote.RegistryHost{Client: client(true), Authorizer: authorizer, Host: endpoint, Scheme: "http", Path: "/v2", Capabilities: all})
		} else {
			hosts = append(hosts, dockerremote.RegistryHost{Client: client(false), Authorizer: authorizer, Host: endpoint, Scheme: "https", Path: "/v2", Capabilities: all})
		}
		return hosts, nil
	}
}

// IsImageNotFound reports whether a pull failed because the registry has no
// such image (as opposed to being unreachable).
func IsImageNotFound(err error) bool { return errdefs.IsNotFound(err) }

// platformMatcher matches images for this host's platform.
func platformMatcher() platforms.MatchComparer { return platforms.Default() }

// ImageNames lists the names of every image present (for tests and the
// images command).
func (r *Runtime) ImageNames(ctx context.Context) ([]string, error) {
	ctx = r.ns(ctx)
	list, err := r.client.ImageService().List(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(list))
	for i, img := range list {
		names[i] = img.Name
	}
	return names, nil
}
