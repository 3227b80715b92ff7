package builtin

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	cloudnames "k8s.io/cloud-provider/names"
	kcmnames "k8s.io/kubernetes/cmd/kube-controller-manager/names"
)

// The README's controller table must list every controller upstream
// kube-controller-manager and cloud-controller-manager know, so it stays
// complete as the pinned upstream version moves. The names packages are
// imported here only (a test), never by the product binary.
var _ = []string{kcmnames.ResourceQuotaController, cloudnames.CloudNodeController}

const tableHeading = "### Upstream controllers and the plugins that do their work"

// upstreamNames returns the string constants of the Go package at path.
func upstreamNames(t *testing.T, path string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.Dir}}", path).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", path, err)
	}
	fset := token.NewFileSet()
	dir := strings.TrimSpace(string(out))
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	var names []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && strings.HasSuffix(s, "-controller") {
					names = append(names, s)
				}
			}
			return true
		})
	}
	if len(names) == 0 {
		t.Fatalf("no controller names found in %s", dir)
	}
	return names
}

// readmeTable returns the table's rows: first column -> second column.
func readmeTable(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), tableHeading)
	if !ok {
		t.Fatalf("README has no %q section", tableHeading)
	}
	if i := strings.Index(section, "\n#"); i >= 0 {
		section = section[:i]
	}
	rows := map[string]string{}
	for _, l := range strings.Split(section, "\n") {
		cells := strings.Split(l, "|")
		if len(cells) < 4 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") {
			continue
		}
		rows[strings.Trim(strings.TrimSpace(cells[1]), "`")] = strings.TrimSpace(cells[2])
	}
	return rows
}

func TestControllerTableIsComplete(t *testing.T) {
	rows := readmeTable(t)
	want := append(upstreamNames(t, "k8s.io/kubernetes/cmd/kube-controller-manager/names"),
		upstreamNames(t, "k8s.io/cloud-provider/names")...)
	want = append(want, "kube-scheduler")
	for _, name := range want {
		if rows[name] == "" {
			t.Errorf("README controller table has no row for upstream %q: add it with the plugin that does its job or why none is needed", name)
		}
	}
	known := map[string]bool{}
	for _, n := range want {
		known[n] = true
	}
	pluginRef := regexp.MustCompile("plugin `([a-z]+)`")
	for name, what := range rows {
		if !known[name] && name != "upstream controller" {
			t.Errorf("README controller table lists %q, which upstream does not know", name)
		}
		for _, m := range pluginRef.FindAllStringSubmatch(what, -1) {
			if _, ok := Lookup(m[1]); !ok {
				t.Errorf("README controller table: %s names plugin %q, which is not built in", name, m[1])
			}
		}
	}
}
