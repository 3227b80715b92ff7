package logs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// ReadOptions are kubectl logs' options.
type ReadOptions struct {
	// Follow keeps reading new output while the container runs.
	Follow bool
	// TailLines is how many of the last lines to show; negative: all.
	TailLines int64
	// Since drops lines written before it.
	Since time.Time
	// Timestamps prefixes each line with its RFC3339Nano time.
	Timestamps bool
	// LimitBytes stops after this many bytes of output; 0: no limit.
	LimitBytes int64
}

// pollInterval is how often a followed log is checked for new output.
const pollInterval = 100 * time.Millisecond

var errLimit = errors.New("limit reached")

// Read writes the log at path to w as kubectl logs shows it. With Follow it
// keeps going until running reports the container stopped and the file's end
// was reached, or ctx ends. A missing file is an empty log.
func Read(ctx context.Context, path string, opts ReadOptions, w io.Writer, running func() bool) error {
	if opts.LimitBytes > 0 {
		w = &limitWriter{w: w, left: opts.LimitBytes}
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) && !opts.Follow {
		return nil
	}
	if err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	defer func() { f.Close() }()
	r := &reader{rd: bufio.NewReader(f), opts: opts, w: w}
	if err := r.backlog(); err != nil {
		return done(err)
	}
	if !opts.Follow {
		return nil
	}
	for {
		if err := r.drain(); err != nil {
			return done(err)
		}
		if rotated(f, path) {
			nf, err := os.Open(path)
			if err == nil {
				f.Close()
				f = nf
				r.rd = bufio.NewReader(f)
				continue
			}
		}
		if !running() {
			return done(r.drain())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pollInterval):
		}
	}
}

func done(err error) error {
	if errors.Is(err, errLimit) {
		return nil
	}
	return err
}

type reader struct {
	rd    *bufio.Reader
	opts  ReadOptions
	w     io.Writer
	carry []byte // an unfinished line at the end of the file
}

// next returns the next complete line, or io.EOF at the end of what is
// written so far.
func (r *reader) next() ([]byte, error) {
	line, err := r.rd.ReadBytes('\n')
	if err == io.EOF {
		r.carry = append(r.carry, line...)
		return nil, io.EOF
	}
	if err != nil {
		return nil, err
	}
	if len(r.carry) > 0 {
		line = append(r.carry, line...)
		r.carry = nil
	}
	return line[:len(line)-1], nil
}

// backlog writes what the file holds now, applying --tail and --since.
func (r *reader) backlog() error {
	if r.opts.TailLines < 0 {
		return r.drain()
	}
	// A line of output may span several partial records; --tail counts
	// whole lines.
	var lines [][]Record
	var cur []Record
	for {
		raw, err := r.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		rec, err := Parse(raw)
		if err != nil || rec.Time.Before(r.opts.Since) {
			continue
		}
		cur = append(cur, rec)
		if !rec.Partial {
			lines = append(lines, cur)
			if int64(len(lines)) > r.opts.TailLines {
				lines = lines[1:]
			}
			cur = nil
		}
	}
	for _, l := range lines {
		for _, rec := range l {
			if err := r.write(rec); err != nil {
				return err
			}
		}
	}
	for _, rec := range cur {
		if err := r.write(rec); err != nil {
			return err
		}
	}
	return nil
}

// drain writes every complete line up to the end of the file.
func (r *reader) drain() error {
	for {
		raw, err := r.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		rec, err := Parse(raw)
		if err != nil || rec.Time.Before(r.opts.Since) {
			continue
		}
		if err := r.write(rec); err != nil {
			return err
		}
	}
}

func (r *reader) write(rec Record) error {
	buf := make([]byte, 0, len(rec.Content)+40)
	if r.opts.Timestamps {
		buf = append(buf, rec.Time.Format(time.RFC3339Nano)...)
		buf = append(buf, ' ')
	}
	buf = append(buf, rec.Content...)
	if !rec.Partial {
		buf = append(buf, '\n')
	}
	_, err := r.w.Write(buf)
	return err
}

// rotated reports whether path now names another file than f.
func rotated(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Stat(path)
	if err1 != nil || err2 != nil {
		return false
	}
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && sa.Ino != sb.Ino
}

type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errLimit
	}
	if int64(len(p)) > l.left {
		n, err := l.w.Write(p[:l.left])
		l.left = 0
		if err == nil {
			err = errLimit
		}
		return n, err
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	return n, err
}
