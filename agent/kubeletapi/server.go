// Package kubeletapi serves the kubelet API that kube-apiserver proxies to:
// container logs, exec, attach and port-forward (SPDY and WebSocket, through
// k8s.io/cri-streaming), the pods it runs, /stats/summary, /healthz,
// /metrics, and kubelet's /metrics/resource, /metrics/cadvisor and
// /metrics/probes. It listens with TLS, authenticates clients by certificate of the
// cluster CA or by bearer token (TokenReview), and authorizes every request
// with a SubjectAccessReview on the node, as kubelet's webhook mode does.
package kubeletapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/keelson/keelson/agent/logs"
	"github.com/keelson/keelson/agent/runtime"
	"github.com/keelson/keelson/internal/localstorage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	utilexec "k8s.io/utils/exec"
)

// Backend is what the API serves from.
type Backend interface {
	Pods() []*v1.Pod
	ContainerLogs(ctx context.Context, namespace, name, container string, previous bool, opts logs.ReadOptions, w io.Writer) error
	Exec(ctx context.Context, namespace, name string, uid types.UID, container string, cmd []string, in io.Reader, out, errw io.Writer, tty bool, resize <-chan runtime.Size) error
	Attach(ctx context.Context, namespace, name string, uid types.UID, container string, in io.Reader, out, errw io.Writer) error
	PortForward(ctx context.Context, namespace, name string, uid types.UID, port int32, stream io.ReadWriteCloser) error
	Summary(ctx context.Context) (*statsv1alpha1.Summary, error)
	UsageReader
}

// Classifier maps backend errors to HTTP statuses.
type Classifier struct {
	NotFound   func(error) bool
	BadRequest func(error) bool
	Conflict   func(error) bool
}

// LocalVolumes removes the directories of local-path volumes on this node.
type LocalVolumes interface {
	EnsureLocalVolume(name string, capacity int64) (localstorage.VolumeState, error)
	RemoveLocalVolume(name string) error
}

// Options configures the server.
type Options struct {
	// Address is host:port to listen on.
	Address  string
	NodeName string
	// GetCertificate serves the kubelet certificate.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ClientCAs verify client certificates (the cluster CA).
	ClientCAs *x509.CertPool
	// Client reviews tokens and access.
	Client  kubernetes.Interface
	Backend Backend
	// Volumes serves PUT and DELETE /storage/local-path/NAME (nil: not
	// served).
	Volumes LocalVolumes
	Errors  Classifier
	// Registry serves /metrics (nil: not served).
	Registry *prometheus.Registry
	// Probes serves /metrics/probes (nil: not served).
	Probes prometheus.Gatherer
	Logger *slog.Logger
	// Clock times the review caches; nil is the real clock.
	Clock clockwork.Clock
}

// Timeouts of streaming sessions, kubelet's defaults.
const (
	streamIdleTimeout     = 4 * time.Hour
	streamCreationTimeout = remotecommand.DefaultStreamCreationTimeout
)

// Server is the kubelet API.
type Server struct {
	opts Options
	auth *authorizer
	srv  *http.Server
	l    net.Listener
}

// Listen opens the server's port.
func Listen(opts Options) (*Server, error) {
	l, err := net.Listen("tcp", opts.Address)
	if err != nil {
		return nil, fmt.Errorf("kubeletapi: listening on %s: %w", opts.Address, err)
	}
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	s := &Server{opts: opts, l: l, auth: newAuthorizer(opts.Client, opts.NodeName, opts.Clock)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("GET /pods", s.pods)
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", s.containerLogs)
	for _, m := range []string{"GET", "POST"} {
		mux.HandleFunc(m+" /exec/{namespace}/{pod}/{container}", s.exec)
		mux.HandleFunc(m+" /exec/{namespace}/{pod}/{uid}/{container}", s.exec)
		mux.HandleFunc(m+" /attach/{namespace}/{pod}/{container}", s.attach)
		mux.HandleFunc(m+" /attach/{namespace}/{pod}/{uid}/{container}", s.attach)
		mux.HandleFunc(m+" /portForward/{namespace}/{pod}", s.portForward)
		mux.HandleFunc(m+" /portForward/{namespace}/{pod}/{uid}", s.portForward)
	}
	mux.HandleFunc("GET /stats/summary", s.summary)
	if opts.Volumes != nil {
		mux.HandleFunc("DELETE "+localstorage.VolumeAPIPath("{name}"), s.removeLocalVolume)
		mux.HandleFunc("PUT "+localstorage.VolumeAPIPath("{name}"), s.ensureLocalVolume)
	}
	if opts.Registry != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{}))
	}
	// Resource and container metrics, read from the cgroups at each
	// scrape (kubelet's /metrics/resource and /metrics/cadvisor).
	mux.Handle("GET /metrics/resource", promhttp.HandlerFor(newResourceRegistry(opts.Backend), promhttp.HandlerOpts{}))
	mux.Handle("GET /metrics/cadvisor", promhttp.HandlerFor(newCadvisorRegistry(opts.Backend), promhttp.HandlerOpts{}))
	if opts.Probes != nil {
		mux.Handle("GET /metrics/probes", promhttp.HandlerFor(opts.Probes, promhttp.HandlerOpts{}))
	}
	s.srv = &http.Server{
		Handler: s.authenticated(mux),
		TLSConfig: &tls.Config{
			GetCertificate: opts.GetCertificate,
			ClientAuth:     tls.VerifyClientCertIfGiven,
			ClientCAs:      opts.ClientCAs,
			MinVersion:     tls.VersionTLS12,
		},
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.l.Addr() }

// Serve serves until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
		s.srv.Close()
	}()
	err := s.srv.ServeTLS(s.l, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// authenticated checks who asks and whether they may, then serves.
func (s *Server) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := s.auth.authenticate(r)
		if err != nil {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		verb, sub := attributes(r)
		ok, reason, err := s.auth.authorize(r.Context(), u, verb, sub)
		if err != nil {
			s.opts.Logger.Warn("authorizing a kubelet API request", "user", u.name, "path", r.URL.Path, "err", err)
			http.Error(w, "authorization failed", http.StatusInternalServerError)
			return
		}
		if !ok {
			msg := fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=nodes, subresource=%s)", u.name, verb, sub)
			if reason != "" {
				msg += ": " + reason
			}
			http.Error(w, msg, http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// attributes maps a request to the node subresource it needs, as kubelet
// does: stats, metrics, log, or proxy for everything else.
func attributes(r *http.Request) (verb, subresource string) {
	switch r.Method {
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
	default:
		verb = "get"
	}
	switch p := r.URL.Path; {
	case strings.HasPrefix(p, "/stats"):
		subresource = "stats"
	case strings.HasPrefix(p, "/metrics"):
		subresource = "metrics"
	case strings.HasPrefix(p, "/logs"):
		subresource = "log"
	case localstorage.IsAPIPath(p):
		// Its own subresource, so that the provisioner needs no
		// nodes/proxy (which would let it exec into every pod).
		subresource = localstorage.Subresource
	default:
		subresource = "proxy"
	}
	return verb, subresource
}

func (s *Server) fail(w http.ResponseWriter, err error) {
	switch {
	case s.opts.Errors.NotFound != nil && s.opts.Errors.NotFound(err):
		http.Error(w, err.Error(), http.StatusNotFound)
	case s.opts.Errors.BadRequest != nil && s.opts.Errors.BadRequest(err):
		http.Error(w, err.Error(), http.StatusBadRequest)
	case s.opts.Errors.Conflict != nil && s.opts.Errors.Conflict(err):
		http.Error(w, err.Error(), http.StatusConflict)
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// removeLocalVolume removes a local-path volume's directory, at the
// provisioner's request, once the volume was released.
func (s *Server) removeLocalVolume(w http.ResponseWriter, r *http.Request) {
	if err := s.opts.Volumes.RemoveLocalVolume(r.PathValue("name")); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ensureLocalVolume makes (or resizes) a local-path volume's directory,
// at the provisioner's request, and says whether its capacity is enforced.
func (s *Server) ensureLocalVolume(w http.ResponseWriter, r *http.Request) {
	var req localstorage.VolumeRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
		http.Error(w, "the body is not a volume request ({\"capacityBytes\": N}): "+err.Error(), http.StatusBadRequest)
		return
	}
	if req.CapacityBytes <= 0 {
		http.Error(w, fmt.Sprintf("capacityBytes is %d: give the volume's capacity in bytes", req.CapacityBytes), http.StatusBadRequest)
		return
	}
	state, err := s.opts.Volumes.EnsureLocalVolume(r.PathValue("name"), req.CapacityBytes)
	if err != nil {
		s.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(state)
}

func (s *Server) pods(w http.ResponseWriter, _ *http.Request) {
	list := v1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}}
	for _, p := range s.opts.Backend.Pods() {
		list.Items = append(list.Items, *p)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(list)
}

func (s *Server) containerLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opts := logs.ReadOptions{TailLines: -1}
	var err error
	boolParam := func(name string) bool { v, _ := strconv.ParseBool(q.Get(name)); return v }
	opts.Follow, opts.Timestamps = boolParam("follow"), boolParam("timestamps")
	if v := q.Get("tailLines"); v != "" {
		if opts.TailLines, err = strconv.ParseInt(v, 10, 64); err != nil || opts.TailLines < 0 {
			http.Error(w, "tailLines must be a non-negative integer", http.StatusBadRequest)
			return
		}
	}
	if v := q.Get("limitBytes"); v != "" {
		if opts.LimitBytes, err = strconv.ParseInt(v, 10, 64); err != nil || opts.LimitBytes < 1 {
			http.Error(w, "limitBytes must be a positive integer", http.StatusBadRequest)
			return
		}
	}
	if v := q.Get("sinceSeconds"); v != "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs < 1 {
			http.Error(w, "sinceSeconds must be a positive integer", http.StatusBadRequest)
			return
		}
		opts.Since = time.Now().Add(-time.Duration(secs) * time.Second)
	}
	if v := q.Get("sinceTime"); v != "" {
		if opts.Since, err = time.Parse(time.RFC3339, v); err != nil {
			http.Error(w, "sinceTime must be an RFC3339 time", http.StatusBadRequest)
			return
		}
	}
	previous := boolParam("previous")
	fw := &flushWriter{w: w}
	if f, ok := w.(http.Flusher); ok {
		fw.f = f
	}
	w.Header().Set("Content-Type", "text/plain")
	err = s.opts.Backend.ContainerLogs(r.Context(), r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container"), previous, opts, fw)
	if err != nil && !fw.wrote {
		s.fail(w, err)
	}
}

// flushWriter flushes after every write so that followed logs stream.
type flushWriter struct {
	w     io.Writer
	f     http.Flusher
	wrote bool
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.wrote = true
	n, err := f.w.Write(p)
	if f.f != nil {
		f.f.Flush()
	}
	return n, err
}

// podFullName is how the streaming library names a pod; split by splitPod.
func podFullName(ns, name string) string { return name + "_" + ns }

func splitPod(full string) (ns, name string) {
	name, ns, _ = strings.Cut(full, "_")
	return ns, name
}

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cmd := r.URL.Query()[v1.ExecCommandParam]
	if len(cmd) == 0 {
		http.Error(w, "missing command", http.StatusBadRequest)
		return
	}
	remotecommand.ServeExec(w, r, executor{s}, podFullName(r.PathValue("namespace"), r.PathValue("pod")), r.PathValue("uid"),
		r.PathValue("container"), cmd, opts, streamIdleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func (s *Server) attach(w http.ResponseWriter, r *http.Request) {
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	remotecommand.ServeAttach(w, r, executor{s}, podFullName(r.PathValue("namespace"), r.PathValue("pod")), r.PathValue("uid"),
		r.PathValue("container"), opts, streamIdleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func (s *Server) portForward(w http.ResponseWriter, r *http.Request) {
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	portforward.ServePortForward(w, r, executor{s}, podFullName(r.PathValue("namespace"), r.PathValue("pod")), r.PathValue("uid"),
		opts, streamIdleTimeout, streamCreationTimeout, portforward.SupportedProtocols)
}

func (s *Server) summary(w http.ResponseWriter, r *http.Request) {
	sum, err := s.opts.Backend.Summary(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(sum)
}

// executor adapts the backend to the streaming library.
type executor struct{ s *Server }

func (e executor) ExecInContainer(ctx context.Context, name, uid, container string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	ns, pod := splitPod(name)
	var sizes chan runtime.Size
	if resize != nil {
		sizes = make(chan runtime.Size)
		go func() {
			defer close(sizes)
			for sz := range resize {
				select {
				case sizes <- runtime.Size{Width: sz.Width, Height: sz.Height}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	err := e.s.opts.Backend.Exec(ctx, ns, pod, types.UID(uid), container, cmd, readerOrNil(in), writerOrNil(out), writerOrNil(errw), tty, sizes)
	if code, ok := runtime.IsExitError(err); ok {
		return utilexec.CodeExitError{Err: err, Code: code}
	}
	return err
}

func (e executor) AttachContainer(ctx context.Context, name, uid, container string, in io.Reader, out, errw io.WriteCloser, _ bool, _ <-chan remotecommand.TerminalSize) error {
	ns, pod := splitPod(name)
	return e.s.opts.Backend.Attach(ctx, ns, pod, types.UID(uid), container, readerOrNil(in), writerOrNil(out), writerOrNil(errw))
}

func (e executor) PortForward(ctx context.Context, name, uid string, port int32, stream io.ReadWriteCloser) error {
	ns, pod := splitPod(name)
	return e.s.opts.Backend.PortForward(ctx, ns, pod, types.UID(uid), port, stream)
}

// readerOrNil and writerOrNil keep absent streams nil interfaces.
func readerOrNil(r io.Reader) io.Reader {
	if r == nil {
		return nil
	}
	return r
}

func writerOrNil(w io.WriteCloser) io.Writer {
	if w == nil {
		return nil
	}
	return w
}
