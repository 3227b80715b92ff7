package config

import (
	"fmt"
	"slices"
	"strings"
)

// AllGroupMembers as a group's only member puts every enabled built-in
// leader plugin not listed in another group in it.
const AllGroupMembers = "*"

// PluginGroups is Plugins.Groups: group name -> member built-in plugins.
//
// A group is the opt-in shared mode for the smallest machines: its members
// are served by one plugin process sharing one informer cache, read with
// the group's own identity (the union of the members' read permissions).
// Each member is still its own plugin to the host: its own name, API
// identity for its writes, status, config, term and restart (a member that
// fails is restarted inside the process, alone). What is lost is the
// process boundary: one address space, one crash (or a hang, or the memory
// limit) takes every member, one GOMEMLIMIT/GOGC (plugins.runtime.GROUP),
// and one identity reads for all. Default: no groups, a process per plugin.
type PluginGroups map[string][]string

// pluginGroupValue is --plugin-group NAME=MEMBER,MEMBER..., repeatable; a
// flag sets that group on top of the file's others.
type pluginGroupValue struct{ m *PluginGroups }

func (v *pluginGroupValue) Type() string { return "name=members" }

func (v *pluginGroupValue) String() string {
	if v.m == nil {
		return ""
	}
	return "[" + strings.Join(v.GetSlice(), ";") + "]"
}

func (v *pluginGroupValue) Set(s string) error { return v.Append(s) }

func (v *pluginGroupValue) Append(s string) error {
	name, list, ok := strings.Cut(s, "=")
	if !ok || name == "" || list == "" {
		return fmt.Errorf("%q is not NAME=MEMBER,MEMBER... (built-in plugins to serve from one process, or NAME=* for all of them)", s)
	}
	if *v.m == nil {
		*v.m = PluginGroups{}
	}
	(*v.m)[name] = strings.Split(list, ",")
	return nil
}

func (v *pluginGroupValue) Replace(ss []string) error {
	for _, s := range ss {
		if err := v.Append(s); err != nil {
			return err
		}
	}
	return nil
}

func (v *pluginGroupValue) GetSlice() []string {
	var out []string
	for name, members := range *v.m {
		out = append(out, name+"="+strings.Join(members, ","))
	}
	slices.Sort(out)
	return out
}

// ResolvedGroups returns each group's members in builtins' order, AllGroupMembers
// expanded to every enabled built-in that no other group lists.
func (p *Plugins) ResolvedGroups(builtins []string) PluginGroups {
	listed := map[string]bool{}
	for _, members := range p.Groups {
		for _, m := range members {
			listed[m] = true
		}
	}
	out := PluginGroups{}
	for name, members := range p.Groups {
		all := slices.Equal(members, []string{AllGroupMembers})
		for _, b := range builtins {
			if slices.Contains(members, b) || all && !listed[b] && !p.BuiltinDisabled(b) {
				out[name] = append(out[name], b)
			}
		}
	}
	return out
}

// GroupOf is the group built-in plugin name runs in ("" when it has a
// process of its own).
func (p *Plugins) GroupOf(name string, builtins []string) string {
	for g, members := range p.ResolvedGroups(builtins) {
		if slices.Contains(members, name) {
			return g
		}
	}
	return ""
}

// validateGroups checks plugins.groups; external names the third-party
// plugins.
func (p *Plugins) validateGroups(builtins []string, external map[string]bool) []string {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	in := map[string]string{}
	stars := 0
	names := make([]string, 0, len(p.Groups))
	for name := range p.Groups {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		field := "plugins.groups." + name + " (--plugin-group)"
		if err := validDNSLabelish(name); err != nil {
			bad("%s: the group name %q %v", field, name, err)
		} else if slices.Contains(builtins, name) || external[name] {
			bad("%s: %q is a plugin's name; name the group something else (it is also the name of its read identity)", field, name)
		}
		members := p.Groups[name]
		if len(members) == 0 {
			bad("%s: lists no members; list built-in plugins, or %q for all of them", field, AllGroupMembers)
		}
		for _, m := range members {
			switch {
			case m == AllGroupMembers && len(members) > 1:
				bad("%s: %q means every built-in plugin and stands alone", field, AllGroupMembers)
			case m == AllGroupMembers:
				if stars++; stars == 2 {
					bad("%s: only one group may take every built-in plugin (%q)", field, AllGroupMembers)
				}
			case external[m]:
				bad("%s: %q is a third-party plugin, which always runs in its own process; only built-in plugins can share one", field, m)
			case !slices.Contains(builtins, m):
				bad("%s: %q is not a built-in leader plugin (node plugins run on the agents); built-ins are %s", field, m, strings.Join(builtins, ", "))
			case p.BuiltinDisabled(m):
				bad("%s: %q is disabled (plugins.disable); remove it from the group or enable it", field, m)
			case in[m] == name:
				bad("%s: %q is listed twice", field, m)
			case in[m] != "":
				bad("%s: %q is already in group %s; a plugin runs in one process only", field, m, in[m])
			default:
				in[m] = name
			}
		}
	}
	for _, name := range names {
		for _, m := range p.ResolvedGroups(builtins)[name] {
			if _, own := p.Runtime[m]; own {
				bad("plugins.runtime.%s (--plugin-memory-limit, --plugin-gogc): %s runs in group %s's process, whose runtime is one for all its members; set plugins.runtime.%s instead", m, m, name, name)
			}
		}
		if len(p.ResolvedGroups(builtins)[name]) == 0 && slices.Equal(p.Groups[name], []string{AllGroupMembers}) {
			bad("plugins.groups.%s (--plugin-group): %q leaves no enabled built-in plugin for the group", name, AllGroupMembers)
		}
	}
	return errs
}
