package conformance

import (
	"os"
	"strings"
	"testing"
)

// A host tool goes into an image with every library it loads and the
// dynamic loader, so it runs on the static busybox base.
func TestHostToolsCarryTheirLibraries(t *testing.T) {
	tools := map[string]string{}
	for _, m := range []map[string]string{HostTools, glibcDNSTools} {
		for name, src := range m {
			tools[name] = src
		}
	}
	for name, src := range tools {
		if _, err := os.Stat(src); err != nil {
			t.Skipf("%s not installed (apt-get install -y %s)", src, HostToolPackages)
		}
		files, dirs, err := withLibs(map[string]file{"usr/local/bin/" + name: {src: src, mode: 0o755}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var loader, libc bool
		for path := range files {
			loader = loader || strings.Contains(path, "ld-linux")
			libc = libc || strings.HasSuffix(path, "/libc.so.6")
		}
		if !loader || !libc || len(dirs) == 0 {
			t.Errorf("%s: files %v, dirs %v: want the loader, libc and their directories", name, keys(files), dirs)
		}
	}
}

func keys(m map[string]file) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
