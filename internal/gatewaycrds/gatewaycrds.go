// Package gatewaycrds holds the Gateway API standard-channel
// CustomResourceDefinitions the server installs at start, copied by
// `go generate` from the sigs.k8s.io/gateway-api module that go.mod pins
// (its config/crd/standard directory), never written by hand: the copy and
// the module's files are compared by this package's test.
package gatewaycrds

import (
	"embed"
	"fmt"
	"io/fs"
	"slices"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

//go:generate sh copy.sh

//go:embed standard/*.yaml
var files embed.FS

// BundleVersionAnnotation is the annotation on every CRD naming the
// Gateway API release it comes from.
const BundleVersionAnnotation = "gateway.networking.k8s.io/bundle-version"

// CRDs returns the standard-channel CRDs, sorted by name.
func CRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	names, err := fs.Glob(files, "standard/*.yaml")
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	out := make([]*apiextensionsv1.CustomResourceDefinition, 0, len(names))
	for _, n := range names {
		raw, err := files.ReadFile(n)
		if err != nil {
			return nil, err
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(raw, crd); err != nil {
			return nil, fmt.Errorf("gateway API CRD %s: %w", n, err)
		}
		if crd.Kind != "CustomResourceDefinition" || crd.Name == "" {
			return nil, fmt.Errorf("gateway API CRD %s: not a named CustomResourceDefinition (kind %q)", n, crd.Kind)
		}
		out = append(out, crd)
	}
	return out, nil
}
