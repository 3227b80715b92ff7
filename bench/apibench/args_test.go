package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keelson/keelson/core/pki"
)

func TestKubeAPIServerArgs(t *testing.T) {
	dir := t.TempDir()
	b, err := pki.Ensure(filepath.Join(dir, "pki"), pki.Options{Hostname: "bench"})
	if err != nil {
		t.Fatal(err)
	}
	args := kubeAPIServerArgs(b, dir, 16443, "http://127.0.0.1:23790")
	if !slices.IsSorted(args) {
		t.Errorf("args not sorted by flag name: %v", args)
	}
	for _, want := range []string{
		"--bind-address=127.0.0.1", "--secure-port=16443", "--etcd-servers=http://127.0.0.1:23790",
		"--authorization-mode=Node,RBAC", "--anonymous-auth=false", "--client-ca-file=" + b.ClientCA,
		"--tls-cert-file=" + b.Serving.CertFile, "--service-account-signing-key-file=" + b.ServiceAccountKey,
		"--service-cluster-ip-range=10.43.0.0/16", "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
	} {
		if !slices.Contains(args, want) {
			t.Errorf("args lack %s", want)
		}
	}
	// Every file flag names a file of the bundle, so the upstream server
	// trusts and serves with the certificates the kubeconfig was made from.
	for _, a := range args {
		name, value, _ := strings.Cut(a, "=")
		if name == "--admission-control-config-file" {
			if !strings.HasPrefix(value, dir) {
				t.Errorf("%s points outside the data dir %s", a, dir)
			}
			continue
		}
		if (strings.HasSuffix(name, "-file") || strings.HasSuffix(name, "-key") || strings.HasSuffix(name, "-certificate")) &&
			!strings.HasPrefix(value, b.Dir) {
			t.Errorf("%s points outside the bundle dir %s", a, b.Dir)
		}
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantSides []string
		wantErr   bool
	}{
		{"defaults", nil, []string{"upstream", "keelson"}, false},
		{"one side", []string{"-sides", "keelson"}, []string{"keelson"}, false},
		{"reversed", []string{"-sides", "keelson,upstream"}, []string{"keelson", "upstream"}, false},
		{"unknown side", []string{"-sides", "etcd"}, nil, true},
		{"repeated side", []string{"-sides", "keelson,keelson"}, nil, true},
		{"no workers", []string{"-workers", "0"}, nil, true},
		{"stray argument", []string{"now"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args, &strings.Builder{})
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseFlags(%q) error = %v, want error %v", tt.args, err, tt.wantErr)
			}
			if !tt.wantErr && !slices.Equal(o.sides, tt.wantSides) {
				t.Errorf("sides = %v, want %v", o.sides, tt.wantSides)
			}
		})
	}
}
