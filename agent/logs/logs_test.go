package logs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock hands out one second per record, so --since can be tested.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { c.t = c.t.Add(time.Second); return c.t }

func writeLog(t *testing.T, path string, writes ...[2]string) *File {
	t.Helper()
	f, err := Open(path, 1<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	f.now = clock.now
	streams := map[string]*stream{"stdout": f.Stream("stdout").(*stream), "stderr": f.Stream("stderr").(*stream)}
	for _, w := range writes {
		if _, err := streams[w[0]].Write([]byte(w[1])); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range streams {
		s.Close()
	}
	return f
}

func TestWriterRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	f := writeLog(t, path, [2]string{"stdout", "hello\nwor"}, [2]string{"stderr", "oops\n"}, [2]string{"stdout", "ld\nno newline"})
	f.Close()
	data, _ := os.ReadFile(path)
	want := strings.Join([]string{
		"2024-01-01T00:00:01Z stdout F hello",
		"2024-01-01T00:00:02Z stderr F oops",
		"2024-01-01T00:00:03Z stdout F world",
		"2024-01-01T00:00:04Z stdout P no newline",
		"",
	}, "\n")
	if string(data) != want {
		t.Errorf("log file:\n%s\nwant:\n%s", data, want)
	}
}

func TestLongLinesArePartialRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	long := strings.Repeat("x", maxLine+10)
	writeLog(t, path, [2]string{"stdout", long + "\n"}).Close()
	var out bytes.Buffer
	if err := Read(context.Background(), path, ReadOptions{TailLines: 1}, &out, nil); err != nil {
		t.Fatal(err)
	}
	if out.String() != long+"\n" {
		t.Errorf("a long line read back as %d bytes, want %d", out.Len(), len(long)+1)
	}
	data, _ := os.ReadFile(path)
	if strings.Count(string(data), " stdout P ") != 1 || strings.Count(string(data), " stdout F ") != 1 {
		t.Errorf("want one partial and one full record:\n%.200s", data)
	}
}

func TestReadOptions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	writeLog(t, path, [2]string{"stdout", "one\ntwo\n"}, [2]string{"stderr", "three\n"}, [2]string{"stdout", "four\n"}).Close()
	cases := []struct {
		name string
		opts ReadOptions
		want string
	}{
		{"all", ReadOptions{TailLines: -1}, "one\ntwo\nthree\nfour\n"},
		{"tail", ReadOptions{TailLines: 2}, "three\nfour\n"},
		{"tail zero", ReadOptions{TailLines: 0}, ""},
		{"since", ReadOptions{TailLines: -1, Since: time.Date(2024, 1, 1, 0, 0, 3, 0, time.UTC)}, "three\nfour\n"},
		{"timestamps", ReadOptions{TailLines: 1, Timestamps: true}, "2024-01-01T00:00:04Z four\n"},
		{"limit", ReadOptions{TailLines: -1, LimitBytes: 6}, "one\ntw"},
	}
	for _, tc := range cases {
		var out bytes.Buffer
		if err := Read(context.Background(), path, tc.opts, &out, nil); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if out.String() != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, out.String(), tc.want)
		}
	}
}

func TestFollowUntilTheContainerStops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	f, err := Open(path, 1<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	out := stream0(f)
	out.Write([]byte("before\n"))
	var running atomic.Bool
	running.Store(true)
	var got syncBuf
	done := make(chan error, 1)
	go func() {
		done <- Read(context.Background(), path, ReadOptions{Follow: true, TailLines: -1}, &got, running.Load)
	}()
	out.Write([]byte("after\n"))
	waitFor(t, func() bool { return got.String() == "before\nafter\n" })
	out.Write([]byte("last\n"))
	running.Store(false)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end after the container stopped")
	}
	if got.String() != "before\nafter\nlast\n" {
		t.Errorf("followed %q", got.String())
	}
}

func TestRotationKeepsMaxFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	f, err := Open(path, 200, 3)
	if err != nil {
		t.Fatal(err)
	}
	w := stream0(f)
	for i := 0; i < 40; i++ {
		w.Write([]byte("a line of output that fills the file\n"))
	}
	f.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "0.log*"))
	if len(files) != 3 {
		t.Errorf("files after rotation: %v, want the current one and two rotated", files)
	}
	if st, err := os.Stat(path); err != nil || st.Size() >= 200 {
		t.Errorf("current file after rotation: %v %v", st, err)
	}
}

func stream0(f *File) *stream { return f.Stream("stdout").(*stream) }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type syncBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// Output that ends without a newline reads back without one, as from
// containerd's logs: `echo -n DONE` is "DONE", not "DONE\n".
func TestUnfinishedLastLineReadsBackAsWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	writeLog(t, path, [2]string{"stdout", "first\nDONE"}).Close()
	var out strings.Builder
	if err := Read(context.Background(), path, ReadOptions{TailLines: 80}, &out, nil); err != nil {
		t.Fatal(err)
	}
	if out.String() != "first\nDONE" {
		t.Errorf("read back %q, want %q", out.String(), "first\nDONE")
	}
}
