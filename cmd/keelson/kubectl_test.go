package main

import "testing"

func TestDefaultKubeconfig(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		exists   bool
		wantPath string
		wantOK   bool
	}{
		{"default dir", []string{"get", "ns"}, nil, true, "/var/lib/keelson/admin.kubeconfig", true},
		{"env dir", []string{"get", "ns"}, map[string]string{"KEELSON_DATA_DIR": "/d"}, true, "/d/admin.kubeconfig", true},
		{"KUBECONFIG set", []string{"get", "ns"}, map[string]string{"KUBECONFIG": "/x"}, true, "", false},
		{"flag", []string{"--kubeconfig", "/y", "get", "ns"}, nil, true, "", false},
		{"flag eq", []string{"get", "--kubeconfig=/y", "ns"}, nil, true, "", false},
		{"flag after --", []string{"exec", "p", "--", "--kubeconfig=/y"}, nil, true, "/var/lib/keelson/admin.kubeconfig", true},
		{"missing file", []string{"get", "ns"}, nil, false, "/var/lib/keelson/admin.kubeconfig", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path, ok := defaultKubeconfig(tc.args, func(k string) string { return tc.env[k] }, func(string) bool { return tc.exists })
			if ok != tc.wantOK || (tc.wantOK && path != tc.wantPath) {
				t.Errorf("got %q %v, want %q %v", path, ok, tc.wantPath, tc.wantOK)
			}
		})
	}
}
