package pods

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/keelson/keelson/agent/cni"
	"github.com/keelson/keelson/agent/logs"
	"github.com/keelson/keelson/agent/runtime"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ErrNotFound is returned for a pod or container this node does not run.
var ErrNotFound = errors.New("not found")

// BadRequestError is a request the kubelet API answers with 400, such as
// logs of a container that has not started.
type BadRequestError struct{ Msg string }

func (e BadRequestError) Error() string { return e.Msg }

// Find returns a pod of this node by namespace and name, and by UID when
// uid is set.
func (m *Manager) Find(namespace, name string, uid types.UID) (*v1.Pod, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.pods {
		if p.Namespace == namespace && p.Name == name && (uid == "" || p.UID == uid) {
			return p, nil
		}
	}
	return nil, fmt.Errorf("pod %s/%s: %w", namespace, name, ErrNotFound)
}

// containerAttempt finds the current (or, with previous, the previous)
// attempt of a pod's container.
func (m *Manager) containerAttempt(ctx context.Context, pod *v1.Pod, name string, previous bool) (*runtime.Container, error) {
	if findContainer(pod, name) == nil {
		return nil, BadRequestError{fmt.Sprintf("container %s is not valid for pod %s", name, pod.Name)}
	}
	list, err := m.rt.List(ctx, map[string]string{labelPodUID: string(pod.UID), labelContainerName: name})
	if err != nil {
		return nil, err
	}
	pc := podContainers{name: list}
	sortAttempts(pc[name])
	if previous {
		if p := pc.previous(name); p != nil {
			return p, nil
		}
		return nil, BadRequestError{fmt.Sprintf("previous terminated container %q in pod %q not found", name, pod.Name)}
	}
	if c := pc.latest(name); c != nil {
		return c, nil
	}
	return nil, BadRequestError{fmt.Sprintf("container %q in pod %q is waiting to start: %s", name, pod.Name, reasonContainerCreating)}
}

// ContainerLogs writes a container's log to w.
func (m *Manager) ContainerLogs(ctx context.Context, namespace, name, container string, previous bool, opts logs.ReadOptions, w io.Writer) error {
	pod, err := m.Find(namespace, name, "")
	if err != nil {
		return err
	}
	c, err := m.containerAttempt(ctx, pod, container, previous)
	if err != nil {
		return err
	}
	running := func() bool {
		cur, err := m.rt.Inspect(ctx, c.ID)
		return err == nil && cur.State == runtime.StateRunning
	}
	return logs.Read(ctx, m.LogPath(pod.UID, container, attemptNumber(c)), opts, w, running)
}

// runningContainer finds the running attempt of a container.
func (m *Manager) runningContainer(ctx context.Context, namespace, name string, uid types.UID, container string) (*v1.Pod, *runtime.Container, error) {
	pod, err := m.Find(namespace, name, uid)
	if err != nil {
		return nil, nil, err
	}
	if container == "" && len(pod.Spec.Containers) > 0 {
		container = pod.Spec.Containers[0].Name
	}
	c, err := m.containerAttempt(ctx, pod, container, false)
	if err != nil {
		return nil, nil, err
	}
	if c.State != runtime.StateRunning {
		return nil, nil, BadRequestError{fmt.Sprintf("container %s is not running", container)}
	}
	return pod, c, nil
}

// Exec runs a command in a running container.
func (m *Manager) Exec(ctx context.Context, namespace, name string, uid types.UID, container string, cmd []string, in io.Reader, out, errw io.Writer, tty bool, resize <-chan runtime.Size) error {
	_, c, err := m.runningContainer(ctx, namespace, name, uid, container)
	if err != nil {
		return err
	}
	opts := runtime.ExecOptions{Cmd: cmd, Stdin: in, TTY: tty, Resize: resize}
	// Nil writers must stay nil interfaces: the runtime discards those.
	if out != nil {
		opts.Stdout = out
	}
	if errw != nil {
		opts.Stderr = errw
	}
	return m.rt.Exec(ctx, c.ID, opts)
}

// Attach connects to a running container's streams until the client goes
// or the container exits.
func (m *Manager) Attach(ctx context.Context, namespace, name string, uid types.UID, container string, in io.Reader, out, errw io.Writer) error {
	_, c, err := m.runningContainer(ctx, namespace, name, uid, container)
	if err != nil {
		return err
	}
	o := m.output(c.ID)
	if o == nil {
		return BadRequestError{"the container's output is not available for attaching"}
	}
	if out != nil {
		defer o.stdout.subscribe(out)()
	}
	if errw != nil {
		defer o.stderr.subscribe(errw)()
	}
	if in != nil && o.stdin != nil {
		go func() {
			o.stdin.mu.Lock()
			defer o.stdin.mu.Unlock()
			_, _ = io.Copy(o.stdin.w, in)
			if o.stdin.once {
				o.stdin.w.Close() // stdinOnce: the first client's end is the input's
			}
		}()
	}
	// Output flows until the client goes or the container ends, also after
	// the client's input ended (as containerd's attach does).
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if gone, _ := m.stopped(ctx, c.ID); gone {
				return nil
			}
		}
	}
}

// PortForward connects stream to a port of the pod, inside its network
// namespace, as kubelet does.
func (m *Manager) PortForward(ctx context.Context, namespace, name string, uid types.UID, port int32, stream io.ReadWriteCloser) error {
	pod, err := m.Find(namespace, name, uid)
	if err != nil {
		return err
	}
	defer stream.Close()
	dial := func() (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
		if err != nil {
			c, err = d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", strconv.Itoa(int(port))))
		}
		return c, err
	}
	var conn net.Conn
	if pod.Spec.HostNetwork {
		conn, err = dial()
	} else {
		err = cni.InNetNS(m.opts.Network.NetNSPath(string(pod.UID)), func() error {
			var derr error
			conn, derr = dial()
			return derr
		})
	}
	if err != nil {
		return fmt.Errorf("connecting to port %d of pod %s/%s: %w", port, namespace, name, err)
	}
	defer conn.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = io.Copy(conn, stream)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	})
	_, err = io.Copy(stream, conn)
	wg.Wait()
	return err
}
