// Package logs writes containers' output to files in the CRI log format
// ("<RFC3339Nano time> <stdout|stderr> <F|P> <content>"), which is what
// kubelet's log files hold, rotates them, and reads them back for `kubectl
// logs` with --follow, --tail, --since, --timestamps and --limit-bytes.
package logs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// maxLine is the longest line written as one record; longer ones are split
// into partial (P) records, as containerd does.
const maxLine = 16 << 10

// File is a container's log file. Its streams may be written concurrently.
type File struct {
	mu       sync.Mutex
	path     string
	f        *os.File
	size     int64
	maxSize  int64
	maxFiles int
	now      func() time.Time
}

// Open opens (appending) or creates the log file at path. Past maxSize
// bytes it is rotated, keeping maxFiles files in all.
func Open(path string, maxSize int64, maxFiles int) (*File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("logs: %w", err)
	}
	return &File{path: path, f: f, size: st.Size(), maxSize: maxSize, maxFiles: max(maxFiles, 1), now: time.Now}, nil
}

// Stream returns a writer for one stream ("stdout" or "stderr") that cuts
// what it is given into records at line ends.
func (l *File) Stream(name string) io.WriteCloser { return &stream{file: l, name: name} }

// Close closes the file.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

func (l *File) record(stream string, tag byte, content []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b bytes.Buffer
	b.Grow(len(content) + 48)
	b.WriteString(l.now().UTC().Format(time.RFC3339Nano))
	b.WriteByte(' ')
	b.WriteString(stream)
	b.WriteByte(' ')
	b.WriteByte(tag)
	b.WriteByte(' ')
	b.Write(content)
	b.WriteByte('\n')
	n, err := l.f.Write(b.Bytes())
	l.size += int64(n)
	if err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	if l.maxSize > 0 && l.size >= l.maxSize {
		return l.rotate()
	}
	return nil
}

// rotate renames the current file with a timestamp suffix, drops the oldest
// files beyond maxFiles and starts a new current file.
func (l *File) rotate() error {
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	rotated := l.path + "." + l.now().UTC().Format("20060102-150405.000000000")
	if err := os.Rename(l.path, rotated); err != nil {
		return fmt.Errorf("logs: rotating: %w", err)
	}
	old, _ := filepath.Glob(l.path + ".*")
	sort.Strings(old)
	for len(old) > l.maxFiles-1 {
		os.Remove(old[0])
		old = old[1:]
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	l.f, l.size = f, 0
	return nil
}

// stream buffers an unfinished line until its end arrives.
type stream struct {
	file    *File
	name    string
	pending []byte
}

func (s *stream) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.pending = append(s.pending, p...)
			for len(s.pending) >= maxLine {
				if err := s.file.record(s.name, 'P', s.pending[:maxLine]); err != nil {
					return 0, err
				}
				s.pending = append(s.pending[:0], s.pending[maxLine:]...)
			}
			return n, nil
		}
		line := p[:i]
		if len(s.pending) > 0 {
			line = append(s.pending, line...)
			s.pending = s.pending[:0]
		}
		for len(line) > maxLine {
			if err := s.file.record(s.name, 'P', line[:maxLine]); err != nil {
				return 0, err
			}
			line = line[maxLine:]
		}
		if err := s.file.record(s.name, 'F', line); err != nil {
			return 0, err
		}
		p = p[i+1:]
	}
	return n, nil
}

// Close writes an unfinished last line as a partial record, as containerd
// does: the output did not end with a newline, so readers (kubectl logs, a
// FallbackToLogsOnError termination message) must not add one.
func (s *stream) Close() error {
	if len(s.pending) == 0 {
		return nil
	}
	err := s.file.record(s.name, 'P', s.pending)
	s.pending = nil
	return err
}

// Record is one parsed log line.
type Record struct {
	Time    time.Time
	Stream  string
	Partial bool
	Content []byte
}

// Parse parses one CRI log line (without its newline).
func Parse(line []byte) (Record, error) {
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return Record{}, fmt.Errorf("logs: no timestamp in %q", truncate(line))
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return Record{}, fmt.Errorf("logs: bad timestamp in %q", truncate(line))
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok || (string(stream) != "stdout" && string(stream) != "stderr") {
		return Record{}, fmt.Errorf("logs: no stream in %q", truncate(line))
	}
	tag, content, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		// An empty line may lose its last space in some writers.
		tag, content = rest, nil
	}
	return Record{Time: t, Stream: string(stream), Partial: strings.HasPrefix(string(tag), "P"), Content: content}, nil
}

func truncate(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}
