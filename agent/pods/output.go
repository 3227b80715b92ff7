package pods

import (
	"context"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/keelson/keelson/agent/logs"
	"github.com/keelson/keelson/agent/runtime"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
)

// output is where a running container's streams go: its log file, the
// clients attached to it, and, for a container with stdin, the pipe that
// attached clients write to.
type output struct {
	file   *logs.File
	stdout *fanout
	stderr *fanout
	stdin  *stdinPipe // nil without stdin
}

func (o *output) io(c *v1.Container) runtime.IO {
	rio := runtime.IO{Stdout: o.stdout, Stderr: o.stderr, Terminal: c.TTY}
	if c.TTY {
		rio.Stderr = nil
	}
	if o.stdin != nil {
		rio.Stdin = o.stdin.r
	}
	return rio
}

func (o *output) close() {
	o.stdout.close()
	o.stderr.close()
	if o.stdin != nil {
		o.stdin.w.Close()
	}
	o.file.Close()
}

// fanout writes a stream to its log and to every attached client.
type fanout struct {
	log  io.WriteCloser
	mu   sync.Mutex
	subs map[int]io.Writer
	next int
}

func (f *fanout) Write(p []byte) (int, error) {
	n, err := f.log.Write(p)
	f.mu.Lock()
	for id, w := range f.subs {
		if _, werr := w.Write(p); werr != nil {
			delete(f.subs, id) // the client went away
		}
	}
	f.mu.Unlock()
	return n, err
}

func (f *fanout) subscribe(w io.Writer) (cancel func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs == nil {
		f.subs = map[int]io.Writer{}
	}
	id := f.next
	f.next++
	f.subs[id] = w
	return func() {
		f.mu.Lock()
		delete(f.subs, id)
		f.mu.Unlock()
	}
}

func (f *fanout) close() { f.log.Close() }

// stdinPipe feeds a container's standard input from attached clients.
type stdinPipe struct {
	r    *io.PipeReader
	w    *io.PipeWriter
	once bool // stdinOnce: the first client's end closes the input
	mu   sync.Mutex
}

// LogPath is a container attempt's log file: <pod dir>/logs/<name>/<n>.log.
func (m *Manager) LogPath(uid types.UID, container string, number int32) string {
	return filepath.Join(m.PodDir(uid), "logs", container, strconv.Itoa(int(number))+".log")
}

// openOutput opens the log file of a container attempt and registers the
// container's streams.
func (m *Manager) openOutput(uid types.UID, c *v1.Container, number int32, id string) (*output, error) {
	f, err := logs.Open(m.LogPath(uid, c.Name, number), m.opts.LogMaxSize, m.opts.LogMaxFiles)
	if err != nil {
		return nil, err
	}
	o := &output{file: f, stdout: &fanout{log: f.Stream("stdout")}, stderr: &fanout{log: f.Stream("stderr")}}
	if c.Stdin {
		r, w := io.Pipe()
		o.stdin = &stdinPipe{r: r, w: w, once: c.StdinOnce}
	}
	m.mu.Lock()
	if old, ok := m.outputs[id]; ok {
		old.close()
	}
	m.outputs[id] = o
	m.mu.Unlock()
	return o, nil
}

// attachOutput reconnects a container this agent did not start (a previous
// run did) to its log file.
func (m *Manager) attachOutput(ctx context.Context, c runtime.Container) error {
	uid := types.UID(c.Labels[labelPodUID])
	number, _ := strconv.Atoi(c.Labels[labelAttempt])
	spec := &v1.Container{Name: c.Labels[labelContainerName]}
	o, err := m.openOutput(uid, spec, int32(number), c.ID)
	if err != nil {
		return err
	}
	return m.rt.Attach(ctx, c.ID, o.io(spec))
}

func (m *Manager) output(id string) *output {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.outputs[id]
}

func (m *Manager) closeOutput(id string) {
	m.mu.Lock()
	o := m.outputs[id]
	delete(m.outputs, id)
	m.mu.Unlock()
	if o != nil {
		o.close()
	}
}

// reap records an exited container's exit and closes its output once the
// last of it is in the log.
func (m *Manager) reap(ctx context.Context, id string) error {
	if err := m.rt.Reap(ctx, id); err != nil {
		return err
	}
	m.closeOutput(id)
	return nil
}

// removeContainer deletes a container and its termination message file.
func (m *Manager) removeContainer(ctx context.Context, id string) error {
	c, err := m.rt.Inspect(ctx, id)
	if runtime.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := m.rt.Remove(ctx, id); err != nil {
		return err
	}
	m.closeOutput(id)
	uid := types.UID(c.Labels[labelPodUID])
	os.Remove(m.terminationFile(uid, id))
	if n, err := strconv.Atoi(c.Labels[labelAttempt]); err == nil {
		os.Remove(m.LogPath(uid, c.Labels[labelContainerName], int32(n)))
	}
	return nil
}

// terminationFile is bind-mounted at the container's terminationMessagePath.
func (m *Manager) terminationFile(uid types.UID, id string) string {
	return filepath.Join(m.PodDir(uid), "termination", id)
}

// maxTerminationMessage is kubelet's limit on a termination message.
const maxTerminationMessage = 4096

// terminationMessage is what the container wrote to its termination
// message file or, with FallbackToLogsOnError and a failure, its log's end.
func (m *Manager) terminationMessage(pod *v1.Pod, c *v1.Container, rc *runtime.Container) string {
	data, _ := readAtMost(m.terminationFile(pod.UID, rc.ID), maxTerminationMessage)
	if len(data) > 0 || c.TerminationMessagePolicy != v1.TerminationMessageFallbackToLogsOnError || rc.ExitCode == 0 {
		return string(data)
	}
	// The last 80 lines, at most 2 KiB, as kubelet takes them.
	var tail limitedBuffer
	tail.max = 2048
	_ = logs.Read(context.Background(), m.LogPath(pod.UID, c.Name, attemptNumber(rc)), logs.ReadOptions{TailLines: 80}, &tail, nil)
	return tail.String()
}

func readAtMost(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

// limitedBuffer keeps the last max bytes written to it.
type limitedBuffer struct {
	buf []byte
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = b.buf[len(b.buf)-b.max:]
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string { return string(b.buf) }

func decodeBase64(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	return string(b), err
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }
