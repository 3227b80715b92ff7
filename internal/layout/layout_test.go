package layout

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/keelson/keelson"

// testLauncher starts real servers for tests; any package's tests may use it.
const testLauncher = "e2e/harness"

// under reports whether pkg is dir or one of its subpackages.
func under(pkg string, dirs ...string) bool {
	for _, d := range dirs {
		if pkg == d || strings.HasPrefix(pkg, d+"/") {
			return true
		}
	}
	return false
}

// builtinPlugin returns "plugins/builtin/NAME" for a package of built-in
// plugin NAME (its subpackages included), or "" for any other package.
func builtinPlugin(pkg string) string {
	rest, ok := strings.CutPrefix(pkg, "plugins/builtin/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	if name == "internal" {
		return ""
	}
	return "plugins/builtin/" + name
}

// check returns why importer (a module-relative package path) may not
// import imported, or "" when it may.
func check(importer, imported string) string {
	switch {
	case under(imported, "e2e", "bench") && !under(importer, "e2e", "bench"):
		return "only e2e and bench import e2e or bench"
	case under(importer, "fsm", "config", "plugins/proto"):
		return importer + " imports nothing of ours (fsm is pure; config and the plugin protocol are leaves)"
	case under(importer, "internal"):
		if !under(imported, "internal") {
			return "internal/* is neutral ground shared by servers, agents and plugins: it imports only internal/*"
		}
	case under(importer, "agent"):
		if under(imported, "core", "plugins/host", "plugins/builtin", "cmd") {
			return "agent never imports core, plugins/host, plugins/builtin or cmd; move what both sides share under internal/"
		}
	case under(importer, "core"):
		if under(imported, "agent", "plugins/builtin", "plugins/sdk", "cmd") {
			return "core never imports agent, plugins/builtin, plugins/sdk or cmd; move what both sides share under internal/"
		}
	case under(importer, "plugins/host"):
		if !under(imported, "plugins/host", "plugins/proto", "internal", "config", "fsm") {
			return "plugins/host imports only plugins/proto, internal/*, config and fsm"
		}
	case under(importer, "plugins/sdk"):
		if !under(imported, "plugins/sdk", "plugins/proto", "internal") {
			return "plugins/sdk imports only plugins/proto and internal/*"
		}
	case importer == "plugins/builtin" || importer == "plugins/builtin/multicall":
		if !under(imported, "plugins/builtin", "plugins/sdk") {
			return "the built-in plugin registries (plugins/builtin, and plugins/builtin/multicall for keelson-plugins) import only the plugins and plugins/sdk"
		}
	case under(importer, "plugins/builtin/internal"):
		if !under(imported, "plugins/sdk", "plugins/builtin/internal") {
			return "plugins/builtin/internal/* imports only plugins/sdk and plugins/builtin/internal/*"
		}
	case builtinPlugin(importer) != "":
		if !under(imported, "plugins/sdk", "plugins/builtin/internal", builtinPlugin(importer)) {
			return "a built-in plugin imports only plugins/sdk, plugins/builtin/internal/* and its own subpackages (never core or agent)"
		}
	case importer == "cmd/keelson-plugins":
		if !under(imported, "plugins/builtin", "plugins/sdk") {
			return "cmd/keelson-plugins (the built-in plugins' binary) imports only plugins/builtin and plugins/sdk: whatever else it links every plugin process pays for"
		}
	case under(importer, "examples"):
		if !under(imported, "plugins/sdk") {
			return "examples import only plugins/sdk, as a third-party plugin would"
		}
	}
	return ""
}

// moduleRoot is two directories up from this package.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
	return root
}

// imports maps every module-relative package directory to the set of our
// packages its Go files (tests included) import, with the file that does.
func imports(t *testing.T, root string) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(rel)
		for _, spec := range f.Imports {
			ip, _ := strconv.Unquote(spec.Path.Value)
			ours, ok := strings.CutPrefix(ip, module+"/")
			if !ok {
				continue
			}
			if out[pkg] == nil {
				out[pkg] = map[string]string{}
			}
			file, _ := filepath.Rel(root, path)
			if prev, seen := out[pkg][ours]; !seen || strings.HasSuffix(prev, "_test.go") {
				out[pkg][ours] = file // a product file's import is the one to report
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestImportRule(t *testing.T) {
	root := moduleRoot(t)
	all := imports(t, root)
	if len(all) < 20 {
		t.Fatalf("found imports in only %d packages under %s; is the walk broken?", len(all), root)
	}
	var bad []string
	for importer, deps := range all {
		for imported, file := range deps {
			if strings.HasSuffix(file, "_test.go") && under(imported, testLauncher) {
				continue
			}
			if why := check(importer, imported); why != "" {
				bad = append(bad, fmt.Sprintf("%s imports %s (in %s): %s", importer, imported, file, why))
			}
		}
	}
	slices.Sort(bad)
	for _, b := range bad {
		t.Error(b)
	}
}

// TestCheckRefuses pins the rules themselves: each forbidden pair is
// refused and each allowed one accepted.
func TestCheckRefuses(t *testing.T) {
	refused := [][2]string{
		{"agent", "core/join"}, {"agent/node", "core/membership"}, {"agent/pods", "plugins/host"},
		{"fsm", "config"}, {"config", "internal/join"}, {"internal/serfpool", "core/raftnode"},
		{"core/liveness", "plugins/sdk/nodehealth"}, {"core/server", "agent/pods"},
		{"plugins/builtin/deployment", "core/kvserver"}, {"plugins/builtin/deployment", "internal/nodehealth"},
		{"plugins/builtin/deployment", "plugins/builtin/replicaset"}, {"plugins/builtin/scheduler/internal/queue", "agent"},
		{"plugins/sdk", "core/pki"}, {"plugins/host", "core/raftnode"}, {"cmd/keelson", "e2e/harness"},
		{"examples/plugins/x", "plugins/host"}, {"cmd/keelson-plugins", "plugins/host"}, {"cmd/keelson-plugins", "internal/pluginbin"},
		{"plugins/builtin/multicall", "internal/pluginbin"}, {"plugins/builtin/multicall", "core/server"},
	}
	for _, p := range refused {
		if check(p[0], p[1]) == "" {
			t.Errorf("%s importing %s is allowed, want refused", p[0], p[1])
		}
	}
	allowed := [][2]string{
		{"agent", "internal/join"}, {"agent/node", "config"}, {"agent/gossip", "internal/serfpool"},
		{"core/server", "plugins/host"}, {"core/server", "fsm"}, {"core/liveness", "internal/nodehealth"},
		{"plugins/builtin/nodelifecycle", "plugins/sdk/nodehealth"}, {"plugins/builtin/replicaset", "plugins/builtin/internal/replication"},
		{"plugins/builtin/scheduler", "plugins/builtin/scheduler/internal/queue"}, {"plugins/builtin", "plugins/builtin/deployment"},
		{"plugins/sdk/nodehealth", "internal/nodehealth"}, {"cmd/keelson", "core/server"}, {"e2e/ha", "core/kvserver"},
		{"cmd/keelson-plugins", "plugins/builtin"}, {"cmd/keelson-plugins", "plugins/sdk"},
		{"plugins/builtin/multicall", "plugins/builtin/podgc"}, {"plugins/builtin", "plugins/builtin/multicall"},
	}
	for _, p := range allowed {
		if why := check(p[0], p[1]); why != "" {
			t.Errorf("%s importing %s is refused (%s), want allowed", p[0], p[1], why)
		}
	}
}
