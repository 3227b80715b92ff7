package runtime

import (
	"io"
	"sync"
	"time"

	"github.com/containerd/containerd/cio"
)

// IO is where a container's standard streams go. With Terminal, the
// container has a TTY and all output arrives on Stdout.
type IO struct {
	Stdin    io.Reader
	Stdout   io.Writer
	Stderr   io.Writer
	Terminal bool
}

func (i IO) opts(fifoDir string) []cio.Opt {
	opts := []cio.Opt{cio.WithStreams(i.Stdin, i.Stdout, i.Stderr)}
	if fifoDir != "" {
		opts = append(opts, cio.WithFIFODir(fifoDir))
	}
	if i.Terminal {
		opts = append(opts, cio.WithTerminal)
	}
	return opts
}

func (i IO) creator(fifoDir string) cio.Creator { return cio.NewCreator(i.opts(fifoDir)...) }
func (i IO) attach() cio.Attach                 { return cio.NewAttach(i.opts("")...) }

// drainTimeout bounds the wait for a dead container's last output: a process
// it left behind may hold the pipe open.
const drainTimeout = 5 * time.Second

// ioTable holds the copiers of tasks this agent started or re-attached to,
// so that their FIFOs are drained and removed when the task goes.
type ioTable struct {
	mu sync.Mutex
	m  map[string]cio.IO
}

func (t *ioTable) put(id string, c cio.IO) {
	if c == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.m[id]; ok && old != c {
		old.Close()
	}
	t.m[id] = c
}

// drain waits for the copiers of id to reach the end of the output.
func (t *ioTable) drain(id string) {
	t.mu.Lock()
	c := t.m[id]
	t.mu.Unlock()
	if c == nil {
		return
	}
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainTimeout):
		c.Cancel()
	}
}

// close releases the copiers of id and removes its FIFOs.
func (t *ioTable) close(id string) {
	t.mu.Lock()
	c := t.m[id]
	delete(t.m, id)
	t.mu.Unlock()
	if c != nil {
		c.Close()
	}
}
