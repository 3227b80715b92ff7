// Package runtime runs containers on containerd for the node agent: it starts
// the agent's own containerd (or uses an existing socket), pulls and imports
// images, and creates, starts, stops, inspects and removes containers from a
// runtime-neutral description. Kubernetes semantics (pods, restart policy,
// probes) live in agent/pods; this package knows containers only.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/keelson/keelson/config"
)

// Namespace is the containerd namespace holding Keelson's images and
// containers, apart from any other user of a shared containerd.
const Namespace = "keelson"

// Labels the runtime keeps on a container to remember what containerd
// forgets once a task is deleted.
const (
	labelStartedAt  = "keelson.io/started-at"
	labelFinishedAt = "keelson.io/finished-at"
	labelExitCode   = "keelson.io/exit-code"
	labelOOM        = "keelson.io/oom-killed"
	labelReason     = "keelson.io/exit-reason"
	labelMessage    = "keelson.io/exit-message"
	labelImageRef   = "keelson.io/image-ref"
)

// Options configures a Runtime.
type Options struct {
	// Socket is containerd's socket.
	Socket string
	// Dir holds the runtime's own state: FIFOs and runc's state root.
	Dir string
	// Snapshotter prepares root filesystems.
	Snapshotter string
	// Registries are the per-registry mirrors and insecure settings.
	Registries map[string]config.Registry
	// Logger receives image and container events.
	Logger *slog.Logger
}

// Runtime is a containerd client scoped to Keelson's namespace.
type Runtime struct {
	client *containerd.Client
	opts   Options
	log    *slog.Logger
	ios    ioTable // the output copiers of started or re-attached tasks
	// oomFloor is the lowest oom_score_adj a container can be given
	// (see oomScoreAdjFloor).
	oomFloor int
}

// New connects to containerd.
func New(ctx context.Context, opts Options) (*Runtime, error) {
	for _, d := range []string{opts.fifoDir(), opts.runcRoot()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("runtime: %w", err)
		}
	}
	c, err := containerd.New(opts.Socket, containerd.WithDefaultNamespace(Namespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("runtime: connecting to containerd at %s: %w", opts.Socket, err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Runtime{client: c, opts: opts, log: opts.Logger, ios: ioTable{m: map[string]cio.IO{}}, oomFloor: oomScoreAdjFloor()}, nil
}

func (o Options) fifoDir() string  { return filepath.Join(o.Dir, "fifo") }
func (o Options) runcRoot() string { return filepath.Join(o.Dir, "runc") }

// Close releases the connection.
func (r *Runtime) Close() error { return r.client.Close() }

// Version is containerd's version, e.g. "1.6.20~ds1".
func (r *Runtime) Version(ctx context.Context) (string, error) {
	v, err := r.client.Version(r.ns(ctx))
	if err != nil {
		return "", fmt.Errorf("runtime: version: %w", err)
	}
	return v.Version, nil
}

func (r *Runtime) ns(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, Namespace)
}

// State is a container's lifecycle state.
type State int

const (
	// StateCreated: the container exists but was never started.
	StateCreated State = iota
	// StateRunning: its process runs.
	StateRunning
	// StateExited: its process ended; ExitCode and FinishedAt say how.
	StateExited
	// StateUnknown: containerd cannot say.
	StateUnknown
)

func (s State) String() string {
	return [...]string{"created", "running", "exited", "unknown"}[s]
}

// Container is what the runtime knows of one container.
type Container struct {
	ID        string
	Labels    map[string]string
	Image     string // the reference it was created from
	ImageRef  string // name@digest of the image it runs
	State     State
	Pid       uint32
	ExitCode  int32
	OOMKilled bool
	// Reaped: the exit is recorded and the task gone (see Reap).
	Reaped bool
	// Reason and Message explain an exit the runtime recorded itself (a
	// failed start, a lost task); empty for a process's own exit.
	Reason, Message string
	CreatedAt       time.Time
	StartedAt       time.Time
	FinishedAt      time.Time
}

// List returns the containers whose labels include every pair in match.
func (r *Runtime) List(ctx context.Context, match map[string]string) ([]Container, error) {
	ctx = r.ns(ctx)
	cs, err := r.client.Containers(ctx, labelFilter(match)...)
	if err != nil {
		return nil, fmt.Errorf("runtime: listing containers: %w", err)
	}
	out := make([]Container, 0, len(cs))
	for _, c := range cs {
		info, err := r.inspect(ctx, c)
		if errdefs.IsNotFound(err) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Inspect returns one container.
func (r *Runtime) Inspect(ctx context.Context, id string) (Container, error) {
	ctx = r.ns(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return Container{}, fmt.Errorf("runtime: container %s: %w", id, err)
	}
	return r.inspect(ctx, c)
}

// IsNotFound reports whether err says a container or image does not exist.
func IsNotFound(err error) bool { return errdefs.IsNotFound(err) }

// ListRecords returns the containers whose labels include every pair in
// match as containerd's records say, in one call, without asking for
// their tasks: a reaped one is StateExited with its exit, any other is
// StateUnknown (running or not), with StartedAt once it was started. For
// readers that learn the rest elsewhere (the stats read the cgroups).
func (r *Runtime) ListRecords(ctx context.Context, match map[string]string) ([]Container, error) {
	ctx = r.ns(ctx)
	cs, err := r.client.Containers(ctx, labelFilter(match)...)
	if err != nil {
		return nil, fmt.Errorf("runtime: listing containers: %w", err)
	}
	out := make([]Container, 0, len(cs))
	for _, c := range cs {
		info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
		if err != nil {
			return nil, err
		}
		rec, _ := record(c.ID(), info)
		if !rec.Reaped {
			rec.State = StateUnknown
		}
		out = append(out, rec)
	}
	return out, nil
}

func labelFilter(match map[string]string) []string {
	var filters []string
	for k, v := range match {
		filters = append(filters, fmt.Sprintf("labels.%q==%s", k, strconv.Quote(v)))
	}
	if len(filters) == 0 {
		return nil
	}
	return []string{strings.Join(filters, ",")}
}

// record is what a container's record (its labels) says; reaped reports
// that it says everything, the exit included.
func record(id string, info containers.Container) (out Container, reaped bool) {
	out = Container{
		ID:        id,
		Labels:    info.Labels,
		Image:     info.Image,
		ImageRef:  info.Labels[labelImageRef],
		CreatedAt: info.CreatedAt,
		State:     StateCreated,
	}
	out.StartedAt = parseTime(info.Labels[labelStartedAt])
	fin, ok := info.Labels[labelFinishedAt]
	if !ok {
		return out, false
	}
	// The task was reaped: everything is in the labels.
	out.State = StateExited
	out.Reaped = true
	out.FinishedAt = parseTime(fin)
	code, _ := strconv.Atoi(info.Labels[labelExitCode])
	out.ExitCode = int32(code)
	out.OOMKilled = info.Labels[labelOOM] == "true"
	out.Reason, out.Message = info.Labels[labelReason], info.Labels[labelMessage]
	return out, true
}

// inspect completes c's record with its task's state. c was just listed
// or loaded, so its metadata is fresh: no second fetch.
func (r *Runtime) inspect(ctx context.Context, c containerd.Container) (Container, error) {
	info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return Container{}, err
	}
	out, reaped := record(c.ID(), info)
	if reaped {
		return out, nil
	}
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		if !out.StartedAt.IsZero() {
			// Started, but the task is gone without an exit record
			// (containerd lost it): it is not running.
			out.State = StateUnknown
		}
		return out, nil
	}
	if err != nil {
		return Container{}, err
	}
	st, err := task.Status(ctx)
	if err != nil {
		if errdefs.IsNotFound(err) {
			out.State = StateUnknown
			return out, nil
		}
		return Container{}, err
	}
	out.Pid = task.Pid()
	switch st.Status {
	case containerd.Running, containerd.Pausing, containerd.Paused:
		out.State = StateRunning
	case containerd.Stopped:
		out.State = StateExited
		out.ExitCode = int32(st.ExitStatus)
		out.FinishedAt = st.ExitTime
		out.OOMKilled = info.Labels[labelOOM] == "true"
	case containerd.Created:
		out.State = StateCreated
	default:
		out.State = StateUnknown
	}
	return out, nil
}

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// Create creates a container from spec; it does not start it.
func (r *Runtime) Create(ctx context.Context, id string, spec ContainerSpec) error {
	ctx = r.ns(ctx)
	img, err := r.client.GetImage(ctx, spec.Image)
	if err != nil {
		return fmt.Errorf("runtime: image %s: %w", spec.Image, err)
	}
	labels := make(map[string]string, len(spec.Labels)+1)
	for k, v := range spec.Labels {
		labels[k] = v
	}
	labels[labelImageRef] = imageRef(img)
	if spec.OOMScoreAdj != nil && *spec.OOMScoreAdj < r.oomFloor {
		floor := r.oomFloor
		spec.OOMScoreAdj = &floor
	}
	_, err = r.client.NewContainer(ctx, id,
		containerd.WithImage(img),
		containerd.WithImageName(spec.Image),
		containerd.WithSnapshotter(r.opts.Snapshotter),
		containerd.WithNewSnapshot(id, img),
		containerd.WithContainerLabels(labels),
		containerd.WithRuntime("io.containerd.runc.v2", &options.Options{Root: r.opts.runcRoot()}),
		containerd.WithNewSpec(specOpts(img, spec)...),
	)
	if err != nil {
		return fmt.Errorf("runtime: creating container %s: %w", id, err)
	}
	return nil
}

// Start starts a created container with its output going to io.
func (r *Runtime) Start(ctx context.Context, id string, io IO) error {
	ctx = r.ns(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return fmt.Errorf("runtime: container %s: %w", id, err)
	}
	task, err := c.NewTask(ctx, io.creator(r.opts.fifoDir()))
	if err != nil {
		return fmt.Errorf("runtime: creating task of %s: %w", id, err)
	}
	// Taken before Start returns: a process that exits at once must not
	// look as if it finished before it started.
	started := time.Now().UTC()
	if err := task.Start(ctx); err != nil {
		if _, derr := task.Delete(ctx, containerd.WithProcessKill); derr != nil {
			r.log.Warn("removing a task that failed to start", "container", id, "err", derr)
		}
		return fmt.Errorf("runtime: starting %s: %w", id, err)
	}
	r.ios.put(id, task.IO())
	if _, err := c.SetLabels(ctx, map[string]string{labelStartedAt: started.Format(time.RFC3339Nano)}); err != nil {
		return fmt.Errorf("runtime: recording the start of %s: %w", id, err)
	}
	return nil
}

// Attach reconnects io to a running container's output, after an agent
// restart. It is a no-op for a container without a task.
func (r *Runtime) Attach(ctx context.Context, id string, io IO) error {
	ctx = r.ns(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return fmt.Errorf("runtime: container %s: %w", id, err)
	}
	task, err := c.Task(ctx, io.attach())
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("runtime: attaching to %s: %w", id, err)
	}
	r.ios.put(id, task.IO())
	return nil
}

// Signal sends sig to a container's process.
func (r *Runtime) Signal(ctx context.Context, id string, sig syscall.Signal) error {
	ctx = r.ns(ctx)
	_, task, err := r.runningTask(ctx, id)
	if err != nil {
		return err
	}
	if err := task.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("runtime: signalling %s: %w", id, err)
	}
	return nil
}

// runningTask loads container id and its task, for an operation on the
// running process (ctx already in the runtime's namespace).
func (r *Runtime) runningTask(ctx context.Context, id string) (containerd.Container, containerd.Task, error) {
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, nil, fmt.Errorf("runtime: container %s: %w", id, err)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("runtime: container %s is not running: %w", id, err)
	}
	return c, task, nil
}

// Reap records an exited container's exit in its labels and deletes its
// task, which releases the shim, after its output has been copied.
func (r *Runtime) Reap(ctx context.Context, id string) error {
	ctx = r.ns(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return fmt.Errorf("runtime: container %s: %w", id, err)
	}
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("runtime: task of %s: %w", id, err)
	}
	st, err := task.Status(ctx)
	if err != nil {
		return fmt.Errorf("runtime: status of %s: %w", id, err)
	}
	if st.Status != containerd.Stopped {
		return fmt.Errorf("runtime: %s is %s, not stopped", id, st.Status)
	}
	labels := map[string]string{
		labelFinishedAt: st.ExitTime.UTC().Format(time.RFC3339Nano),
		labelExitCode:   strconv.Itoa(int(st.ExitStatus)),
	}
	if _, err := c.SetLabels(ctx, labels); err != nil {
		return fmt.Errorf("runtime: recording the exit of %s: %w", id, err)
	}
	r.ios.drain(id)
	if _, err := task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("runtime: deleting the task of %s: %w", id, err)
	}
	r.ios.close(id)
	return nil
}

// RecordExit records an exit the runtime decided itself: a container that
// could not start, or whose task was lost. Its task, if any, is removed.
func (r *Runtime) RecordExit(ctx context.Context, id string, code int, reason, message string) error {
	ctx = r.ns(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return fmt.Errorf("runtime: container %s: %w", id, err)
	}
	if task, err := c.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("runtime: deleting the task of %s: %w", id, err)
		}
	}
	r.ios.close(id)
	if len(message) > maxMessage {
		message = message[:maxMessage]
	}
	labels := map[string]string{
		labelFinishedAt: time.Now().UTC().Format(time.RFC3339Nano),
		labelExitCode:   strconv.Itoa(code),
		labelReason:     reason,
		labelMessage:    message,
	}
	if _, err := c.SetLabels(ctx, labels); err != nil {
		return fmt.Errorf("runtime: recording the exit of %s: %w", id, err)
	}
	return nil
}

// UpdateResources changes a running container's cgroup to res through
// containerd's task update (what CRI's UpdateContainerResources does), then
// records labels on the container. Settings res leaves zero keep their
// current value.
func (r *Runtime) UpdateResources(ctx context.Context, id string, res Resources, labels map[string]string) error {
	ctx = r.ns(ctx)
	_, task, err := r.runningTask(ctx, id)
	if err != nil {
		return err
	}
	if err := task.Update(ctx, containerd.WithResources(res.linux())); err != nil {
		return fmt.Errorf("runtime: updating the resources of %s: %w", id, err)
	}
	return r.SetLabels(ctx, id, labels)
}

// SetLabels adds labels to a container's record (replacing those of the
// same key).
func (r *Runtime) SetLabels(ctx context.Context, id string, labels map[string]string) error {
	if len(labels) == 0 {
		return nil
	}
	ctx = r.ns(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return fmt.Errorf("runtime: container %s: %w", id, err)
	}
	if _, err := c.SetLabels(ctx, labels); err != nil {
		return fmt.Errorf("runtime: labelling %s: %w", id, err)
	}
	return nil
}

// maxMessage bounds a recorded message: labels are small.
const maxMessage = 1024

// MarkOOMKilled records that the kernel's OOM killer hit the container.
func (r *Runtime) MarkOOMKilled(ctx context.Context, id string) error {
	ctx = r.ns(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return err
	}
	_, err = c.SetLabels(ctx, map[string]string{labelOOM: "true"})
	return err
}

// Remove deletes a container, its task (killing it) and its snapshot.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	ctx = r.ns(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("runtime: container %s: %w", id, err)
	}
	if task, err := c.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("runtime: deleting the task of %s: %w", id, err)
		}
		r.ios.drain(id)
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("runtime: task of %s: %w", id, err)
	}
	r.ios.close(id)
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("runtime: deleting container %s: %w", id, err)
	}
	return nil
}

// RemoveAll kills and deletes every task and container in Keelson's
// namespace, and only there (keelson killall). It returns the IDs of the
// containers removed.
func (r *Runtime) RemoveAll(ctx context.Context) ([]string, error) {
	cs, err := r.client.Containers(r.ns(ctx))
	if err != nil {
		return nil, fmt.Errorf("runtime: listing containers: %w", err)
	}
	var ids []string
	var errs []error
	for _, c := range cs {
		if err := r.Remove(ctx, c.ID()); err != nil {
			errs = append(errs, err)
			continue
		}
		ids = append(ids, c.ID())
	}
	return ids, errors.Join(errs...)
}
