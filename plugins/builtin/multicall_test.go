package builtin

import (
	"slices"
	"strings"
	"testing"

	"github.com/keelson/keelson/plugins/builtin/multicall"
)

// The keelson-plugins binary serves every built-in but
// multicall.ServedByKeelson, and keelson serves those in their start
// places.
func TestMulticallServesAllButServedByKeelson(t *testing.T) {
	lean := multicall.Lean().Names()
	want := append(slices.Clone(lean), multicall.ServedByKeelson...)
	slices.Sort(want)
	if got := Names(); !slices.Equal(got, want) {
		t.Errorf("builtin.Names() = %q; want multicall's %q and multicall.ServedByKeelson", got, want)
	}
	for _, n := range multicall.ServedByKeelson {
		if slices.Contains(lean, n) {
			t.Errorf("%s is in multicall.Leader(), which keelson-plugins serves", n)
		}
		if err := multicall.Lean().Serve([]string{n}); err == nil || !strings.Contains(err.Error(), "keelson plugin "+n) {
			t.Errorf("keelson-plugins %s: error %v; want one naming `keelson plugin %s`", n, err, n)
		}
		if err := multicall.Lean().Serve([]string{GroupArg, "g", "podgc", n}); err == nil || !strings.Contains(err.Error(), "keelson plugin "+n) {
			t.Errorf("keelson-plugins group g podgc %s: error %v; want one naming `keelson plugin %s`", n, err, n)
		}
	}
	var order []string
	for _, p := range All() {
		order = append(order, p.Name)
	}
	for after, n := range map[string]string{"clusterroleaggregation": "resourcequota", "servicecidr": "vapstatus"} {
		if i := slices.Index(order, after); i < 0 || i+1 >= len(order) || order[i+1] != n {
			t.Errorf("start order %q: want %s right after %s", order, n, after)
		}
	}
}
