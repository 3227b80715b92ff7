package host

import (
	"bufio"
	"io"
	"log/slog"
	"strings"
)

// lineLogger turns raw writes (what a plugin prints to os.Stderr after
// go-plugin redirected it, e.g. klog) into one slog record per line.
func lineLogger(l *slog.Logger, stream string) io.WriteCloser {
	r, w := io.Pipe()
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			if line := strings.TrimRight(sc.Text(), "\r"); line != "" {
				l.Info(line, "stream", stream)
			}
		}
		_ = r.CloseWithError(sc.Err())
	}()
	return w
}
