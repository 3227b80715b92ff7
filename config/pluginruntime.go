package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// PluginRuntime tunes the Go runtime of a plugin process through the
// environment it starts with. The zero value is Go's own behaviour: no
// memory limit, GOGC 100. Keelson sets neither by default, because the
// right limit depends on the cluster's size: a limit below a controller's
// live heap makes it spend up to half its CPU collecting garbage.
type PluginRuntime struct {
	// MemoryLimit is the process's soft memory limit (GOMEMLIMIT) as a
	// quantity such as 256Mi: as the process nears it, the garbage
	// collector runs more often. Empty: no limit.
	MemoryLimit string `json:"memoryLimit"`
	// GOGC is the heap growth, in percent of the live heap, that triggers a
	// collection (GOGC). 0: Go's default (100); -1: off, collecting only
	// when MemoryLimit is near (needs MemoryLimit).
	GOGC int `json:"gogc"`
}

// minPluginMemoryLimit is the smallest useful GOMEMLIMIT: an idle plugin
// process already holds about 10 MiB.
var minPluginMemoryLimit = resource.MustParse("16Mi")

// PluginRuntimeFor is the runtime of plugin name: its own entry's fields,
// each falling back to the "*" entry's.
func (p *Plugins) PluginRuntimeFor(name string) PluginRuntime {
	rt, all := p.Runtime[name], p.Runtime[AllBuiltinPlugins]
	if rt.MemoryLimit == "" {
		rt.MemoryLimit = all.MemoryLimit
	}
	if rt.GOGC == 0 {
		rt.GOGC = all.GOGC
	}
	return rt
}

// Env is the environment that applies rt to a Go process. It assumes rt
// passed validate.
func (rt PluginRuntime) Env() []string {
	var env []string
	if rt.MemoryLimit != "" {
		q := resource.MustParse(rt.MemoryLimit)
		env = append(env, "GOMEMLIMIT="+strconv.FormatInt(q.Value(), 10))
	}
	switch {
	case rt.GOGC < 0:
		env = append(env, "GOGC=off")
	case rt.GOGC > 0:
		env = append(env, "GOGC="+strconv.Itoa(rt.GOGC))
	}
	return env
}

// validate checks one entry (as merged by PluginRuntimeFor).
func (rt PluginRuntime) validate(field string) []string {
	var errs []string
	if rt.MemoryLimit != "" {
		q, err := resource.ParseQuantity(rt.MemoryLimit)
		switch {
		case err != nil:
			errs = append(errs, fmt.Sprintf("%s.memoryLimit (--plugin-memory-limit): %q is not a quantity; write bytes with a suffix, such as 256Mi or 1Gi", field, rt.MemoryLimit))
		case q.Cmp(minPluginMemoryLimit) < 0:
			errs = append(errs, fmt.Sprintf("%s.memoryLimit (--plugin-memory-limit): %s is below %s, less than an idle plugin holds: the plugin would do little but collect garbage; raise it or leave it empty for no limit",
				field, rt.MemoryLimit, minPluginMemoryLimit.String()))
		}
	}
	switch {
	case rt.GOGC < -1:
		errs = append(errs, fmt.Sprintf("%s.gogc (--plugin-gogc): %d is not a percentage; use a positive number (Go's default is 100), 0 for the default or -1 for off", field, rt.GOGC))
	case rt.GOGC == -1 && rt.MemoryLimit == "":
		errs = append(errs, fmt.Sprintf("%s.gogc (--plugin-gogc): -1 (off) needs a memoryLimit, or the plugin's heap grows without bound; set %s.memoryLimit", field, field))
	}
	return errs
}

// validateRuntime checks every entry of p.Runtime, each as it applies
// (merged with "*"), naming the plugin entry at fault.
func (p *Plugins) validateRuntime(known func(string) bool) []string {
	var errs []string
	names := make([]string, 0, len(p.Runtime))
	for name := range p.Runtime {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		field := "plugins.runtime." + name
		if name != AllBuiltinPlugins && !known(name) {
			errs = append(errs, fmt.Sprintf("%s: no built-in or external plugin is called %q (%q sets every plugin)", field, name, AllBuiltinPlugins))
			continue
		}
		errs = append(errs, p.PluginRuntimeFor(name).validate(field)...)
	}
	return errs
}

// pluginRuntimeValue is --plugin-memory-limit or --plugin-gogc, NAME=VALUE
// repeatable ("*" for every plugin); a flag sets that field of that
// plugin's entry and leaves the rest of the file's.
type pluginRuntimeValue struct {
	m    *map[string]PluginRuntime
	flag string
	set  func(rt *PluginRuntime, v string) error
	get  func(rt PluginRuntime) string
}

func newMemoryLimitValue(m *map[string]PluginRuntime) *pluginRuntimeValue {
	return &pluginRuntimeValue{m: m, flag: "plugin-memory-limit",
		set: func(rt *PluginRuntime, v string) error { rt.MemoryLimit = v; return nil },
		get: func(rt PluginRuntime) string { return rt.MemoryLimit }}
}

func newGOGCValue(m *map[string]PluginRuntime) *pluginRuntimeValue {
	return &pluginRuntimeValue{m: m, flag: "plugin-gogc",
		set: func(rt *PluginRuntime, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("--plugin-gogc: %q is not a whole number (a percentage such as 50, or -1 for off)", v)
			}
			rt.GOGC = n
			return nil
		},
		get: func(rt PluginRuntime) string {
			if rt.GOGC == 0 {
				return ""
			}
			return strconv.Itoa(rt.GOGC)
		}}
}

func (v *pluginRuntimeValue) Type() string { return "name=value" }

func (v *pluginRuntimeValue) String() string {
	if v.m == nil {
		return ""
	}
	return "[" + strings.Join(v.GetSlice(), ",") + "]"
}

func (v *pluginRuntimeValue) Set(s string) error { return v.Append(s) }

func (v *pluginRuntimeValue) Append(s string) error {
	name, val, ok := strings.Cut(s, "=")
	if !ok || name == "" || val == "" {
		return fmt.Errorf("--%s: %q is not NAME=VALUE (a plugin's name, or %q for every plugin)", v.flag, s, AllBuiltinPlugins)
	}
	if *v.m == nil {
		*v.m = map[string]PluginRuntime{}
	}
	rt := (*v.m)[name]
	if err := v.set(&rt, val); err != nil {
		return err
	}
	(*v.m)[name] = rt
	return nil
}

// Replace sets the given plugins' field on top of the file's entries.
func (v *pluginRuntimeValue) Replace(ss []string) error {
	for _, s := range ss {
		if err := v.Append(s); err != nil {
			return err
		}
	}
	return nil
}

func (v *pluginRuntimeValue) GetSlice() []string {
	var out []string
	for name, rt := range *v.m {
		if val := v.get(rt); val != "" {
			out = append(out, name+"="+val)
		}
	}
	slices.Sort(out)
	return out
}
