// Package plugininstall is the cluster's record of the third-party plugins
// installed with `keelson plugin install`: one cluster-scoped PluginInstall
// object (keelson.io/v1alpha1) per plugin, naming the executable by its
// SHA-256 in the servers' plugin stores (core/pluginstore), the API
// permissions the operator approved for it and its configuration. Every
// server reads them to keep its store filled; the leader runs them.
package plugininstall

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/config"
)

// GVR is the PluginInstall resource.
var GVR = schema.GroupVersionResource{Group: "keelson.io", Version: "v1alpha1", Resource: "plugininstalls"}

// Kind is the PluginInstall kind.
const Kind = "PluginInstall"

// Record is one installed plugin.
type Record struct {
	// Name is the plugin's name (its Plugin status object, its API user).
	Name string `json:"-"`
	// SHA256 names the executable in the plugin store.
	SHA256 string `json:"sha256"`
	// Preset and Rules approve the plugin's API permissions, as
	// plugins.external[i] does for a plugin configured on the server.
	Preset string              `json:"preset,omitempty"`
	Rules  []rbacv1.PolicyRule `json:"rules,omitempty"`
	// Config is the plugin's configuration section (a JSON object).
	Config json.RawMessage `json:"config,omitempty"`
}

// External is the record as a server-configured plugin: what the
// validation and the approval check of plugins.external apply to.
func (r Record) External() config.ExternalPlugin {
	return config.ExternalPlugin{Name: r.Name, SHA256: r.SHA256, Preset: r.Preset, Rules: r.Rules}
}

// Validate checks the record as plugins.external[i] is checked, naming the
// PluginInstall's fields.
func (r Record) Validate(builtins []string) error {
	field := "PluginInstall " + r.Name + " spec"
	errs := r.External().Validate(field, "", builtins)
	if r.SHA256 != strings.ToLower(r.SHA256) {
		errs = append(errs, field+".sha256: must be lower-case hex, as sha256sum prints it")
	}
	if len(bytes.TrimSpace(r.Config)) > 0 {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(r.Config, &obj); err != nil {
			errs = append(errs, field+".config: must be a JSON object (the plugin's configuration section): "+err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

// Key changes whenever the plugin must be restarted: a new executable,
// approval or configuration.
func (r Record) Key() string {
	b, _ := json.Marshal(r) // plain data: cannot fail
	return string(b)
}

// FromObject reads a PluginInstall object.
func FromObject(u *unstructured.Unstructured) (Record, error) {
	spec, _, err := unstructured.NestedMap(u.Object, "spec")
	if err != nil {
		return Record{}, fmt.Errorf("PluginInstall %s: spec: %w", u.GetName(), err)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return Record{}, fmt.Errorf("PluginInstall %s: spec: %w", u.GetName(), err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("PluginInstall %s: spec: %w", u.GetName(), err)
	}
	r.Name = u.GetName()
	return r, nil
}

// Object is the record as a PluginInstall object to create or update.
func (r Record) Object() (*unstructured.Unstructured, error) {
	var spec map[string]any
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion(GVR.GroupVersion().String())
	u.SetKind(Kind)
	u.SetName(r.Name)
	return u, nil
}

// CRD is the PluginInstall CustomResourceDefinition, which the raft leader
// keeps installed.
func CRD() *apiextensionsv1.CustomResourceDefinition {
	str := func(desc string) apiextensionsv1.JSONSchemaProps {
		return apiextensionsv1.JSONSchemaProps{Type: "string", Description: desc}
	}
	free := func(typ, desc string) apiextensionsv1.JSONSchemaProps {
		return apiextensionsv1.JSONSchemaProps{Type: typ, Description: desc, XPreserveUnknownFields: ptr.To(true)}
	}
	rules := free("array", "the RBAC rules approved for the plugin (as a ClusterRole's)")
	rules.XPreserveUnknownFields = nil
	rules.Items = &apiextensionsv1.JSONSchemaPropsOrArray{Schema: ptr.To(free("object", "an RBAC PolicyRule"))}
	sha := str("the executable's SHA-256, its name in every server's plugin store")
	sha.Pattern = "^[0-9a-f]{64}$"
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: GVR.Resource + "." + GVR.Group},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: GVR.Group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{
				Plural: GVR.Resource, Singular: "plugininstall", Kind: Kind, ListKind: Kind + "List", Categories: []string{"keelson"},
			},
			Scope: apiextensionsv1.ClusterScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: GVR.Version, Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type:        "object",
					Description: "A third-party plugin installed with `keelson plugin install`: the raft leader runs it, whichever server leads.",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"apiVersion": {Type: "string"},
						"kind":       {Type: "string"},
						"metadata":   {Type: "object"},
						"spec": {Type: "object", Required: []string{"sha256"}, Properties: map[string]apiextensionsv1.JSONSchemaProps{
							"sha256": sha,
							"preset": str("a documented set of approved API permissions (read-only, cloud-provider, ingress-controller)"),
							"rules":  rules,
							"config": free("object", "the plugin's configuration section"),
						}},
					},
				}},
				AdditionalPrinterColumns: []apiextensionsv1.CustomResourceColumnDefinition{
					{Name: "SHA256", Type: "string", JSONPath: ".spec.sha256"},
					{Name: "Preset", Type: "string", JSONPath: ".spec.preset"},
					{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
				},
			}},
		},
	}
}
