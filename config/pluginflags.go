package config

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// externalPluginsValue is --plugin NAME=SHA256[:PRESET], repeatable. It implements
// pflag.SliceValue so that flags replace the file's list (see overlayFlags).
type externalPluginsValue struct{ list *[]ExternalPlugin }

func (v *externalPluginsValue) Type() string { return "name=sha256" }

func (v *externalPluginsValue) String() string {
	if v.list == nil {
		return ""
	}
	return "[" + strings.Join(v.GetSlice(), ",") + "]"
}

func (v *externalPluginsValue) Set(s string) error { return v.Append(s) }

func (v *externalPluginsValue) Append(s string) error {
	name, rest, ok := strings.Cut(s, "=")
	sum, preset, _ := strings.Cut(rest, ":")
	if !ok || name == "" || sum == "" {
		return fmt.Errorf("%q is not NAME=SHA256[:PRESET] (the executable NAME in the plugin dir, its sha256sum and the preset of API permissions approved for it)", s)
	}
	*v.list = append(*v.list, ExternalPlugin{Name: name, SHA256: sum, Preset: preset})
	return nil
}

func (v *externalPluginsValue) Replace(ss []string) error {
	*v.list = nil
	for _, s := range ss {
		if err := v.Append(s); err != nil {
			return err
		}
	}
	return nil
}

func (v *externalPluginsValue) GetSlice() []string {
	var out []string
	for _, e := range *v.list {
		s := e.Name + "=" + e.SHA256
		if e.Preset != "" {
			s += ":" + e.Preset
		}
		out = append(out, s)
	}
	return out
}

// pluginConfigValue is --plugin-config NAME=JSON, repeatable; a flag
// replaces that plugin's section from the file and leaves the others.
type pluginConfigValue struct{ m *map[string]json.RawMessage }

func (v *pluginConfigValue) Type() string { return "name=json" }

func (v *pluginConfigValue) String() string {
	if v.m == nil {
		return ""
	}
	return "[" + strings.Join(v.GetSlice(), ",") + "]"
}

func (v *pluginConfigValue) Set(s string) error { return v.Append(s) }

func (v *pluginConfigValue) Append(s string) error {
	name, raw, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("%q is not NAME=JSON, e.g. scheduler='{\"percentageOfNodesToScore\":50}'", s)
	}
	if !json.Valid([]byte(raw)) {
		return fmt.Errorf("the configuration of plugin %s is not valid JSON: %s", name, raw)
	}
	if *v.m == nil {
		*v.m = map[string]json.RawMessage{}
	}
	(*v.m)[name] = json.RawMessage(raw)
	return nil
}

// Replace sets the given sections on top of the ones already there (from
// the file): configuring one plugin by flag must not drop the others.
func (v *pluginConfigValue) Replace(ss []string) error {
	for _, s := range ss {
		if err := v.Append(s); err != nil {
			return err
		}
	}
	return nil
}

func (v *pluginConfigValue) GetSlice() []string {
	var out []string
	for name, raw := range *v.m {
		out = append(out, name+"="+string(raw))
	}
	slices.Sort(out)
	return out
}
