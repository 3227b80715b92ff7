package plugininstall

import (
	"encoding/json"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

var sum = strings.Repeat("ab", 32)

func TestRecordRoundTrip(t *testing.T) {
	r := Record{Name: "lb", SHA256: sum, Preset: "cloud-provider",
		Rules:  []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}},
		Config: json.RawMessage(`{"pool":"10.0.0.0/24"}`)}
	obj, err := r.Object()
	if err != nil {
		t.Fatal(err)
	}
	if obj.GetKind() != Kind || obj.GetAPIVersion() != "keelson.io/v1alpha1" || obj.GetName() != "lb" {
		t.Fatalf("object %v", obj.Object)
	}
	back, err := FromObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	if back.Key() != r.Key() || back.Name != r.Name {
		t.Errorf("round trip changed the record: %+v, want %+v", back, r)
	}
	changed := r
	changed.Config = json.RawMessage(`{"pool":"10.0.1.0/24"}`)
	if changed.Key() == r.Key() {
		t.Error("a configuration change keeps the key: the plugin would not restart")
	}
}

func TestRecordValidate(t *testing.T) {
	builtins := []string{"job"}
	for _, tc := range []struct {
		name string
		r    Record
		want string // "" valid
	}{
		{"valid", Record{Name: "lb", SHA256: sum, Preset: "read-only"}, ""},
		{"no approval", Record{Name: "lb", SHA256: sum}, "PluginInstall lb spec.rules: approve the API permissions"},
		{"unknown preset", Record{Name: "lb", SHA256: sum, Preset: "admin"}, `PluginInstall lb spec.preset: "admin" is not a preset`},
		{"built-in name", Record{Name: "job", SHA256: sum, Preset: "read-only"}, `"job" is the name of a built-in plugin`},
		{"bad sum", Record{Name: "lb", SHA256: "123", Preset: "read-only"}, `spec.sha256: "123" is not a SHA-256 checksum`},
		{"upper-case sum", Record{Name: "lb", SHA256: strings.ToUpper(sum), Preset: "read-only"}, "must be lower-case hex"},
		{"config not an object", Record{Name: "lb", SHA256: sum, Preset: "read-only", Config: json.RawMessage(`[1]`)}, "spec.config: must be a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Validate(builtins)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("valid record refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
