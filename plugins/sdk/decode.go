package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	strictjson "sigs.k8s.io/json"
)

// ConfigError is a mistake in a plugin's configuration section. Its
// message names the key at fault; when it leaves the plugin (Run returns
// it, wrapped or not) the SDK prefixes it with plugins.config.NAME, the
// section's place in the server configuration, unless the plugin already
// did.
type ConfigError struct {
	// Key is the offending key, dotted from the section's top
	// (e.g. "preemption.minCandidateNodesAbsolute"); empty when the
	// section as a whole is wrong.
	Key string
	// Err says what is wrong and, where it can, what to write instead.
	Err error
}

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// ConfigErrorf returns a ConfigError for key, its message formatted as
// fmt.Errorf does; the message should name the key.
func ConfigErrorf(key, format string, args ...any) error {
	return &ConfigError{Key: key, Err: fmt.Errorf(format, args...)}
}

// DecodeConfig decodes a plugin's config section into v, strictly: a key
// that is not one of v's JSON field names spelt exactly (encoding/json
// alone would take "clusterCidr" for "clusterCIDR") is refused with an
// error naming it, so a misspelt option is never silently ignored. An empty
// or null section leaves v as it is (the plugin's defaults). Errors are
// *ConfigError.
func DecodeConfig(raw json.RawMessage, v any) error {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return nil
	}
	strict, err := strictjson.UnmarshalStrict(trimmed, v, strictjson.DisallowUnknownFields, strictjson.DisallowDuplicateFields)
	if err != nil {
		return &ConfigError{Err: fmt.Errorf("not a valid configuration section: %w", err)}
	}
	if len(strict) == 0 {
		return nil
	}
	errs := make([]error, len(strict))
	for i, e := range strict {
		errs[i] = e
		if key := strictKey(e); strings.HasPrefix(e.Error(), "unknown field") {
			if known := fieldsAt(reflect.TypeOf(v), strings.Split(key, ".")); len(known) > 0 {
				errs[i] = fmt.Errorf("%w; the fields are %s (spelt exactly: keys are case-sensitive)", e, strings.Join(known, ", "))
			}
		}
	}
	return &ConfigError{Key: strictKey(strict[0]), Err: errors.Join(errs...)}
}

// fieldsAt lists the JSON names of the struct holding the last key of
// path, for an error to say what could have been meant; nil when the path
// leads through something other than structs.
func fieldsAt(t reflect.Type, path []string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	names := map[string]reflect.Type{}
	collectFields(t, names)
	if len(path) > 1 {
		next, ok := names[path[0]]
		if !ok {
			return nil
		}
		return fieldsAt(next, path[1:])
	}
	return slices.Sorted(maps.Keys(names))
}

// collectFields adds t's JSON field names, and those of its embedded
// structs (which encoding/json inlines), to names.
func collectFields(t reflect.Type, names map[string]reflect.Type) {
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || (!f.IsExported() && !f.Anonymous):
		case f.Anonymous && name == "":
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				collectFields(ft, names)
			}
		case name == "":
			names[f.Name] = f.Type
		default:
			names[name] = f.Type
		}
	}
}

// strictKey extracts the key from sigs.k8s.io/json's `unknown field "a.b"`
// and `duplicate field "a.b"`.
func strictKey(err error) string {
	_, quoted, ok := strings.Cut(err.Error(), ` field "`)
	if !ok {
		return ""
	}
	key, _, _ := strings.Cut(quoted, `"`)
	return key
}

// withConfigPrefix prefixes an error that carries a ConfigError with the
// configuration section's name, plugins.config.NAME, unless it already
// starts with it: that is what the operator finds in the server's config.
func withConfigPrefix(plugin string, err error) error {
	var ce *ConfigError
	if err == nil || !errors.As(err, &ce) {
		return err
	}
	prefix := "plugins.config." + plugin
	if strings.HasPrefix(err.Error(), prefix) {
		return err
	}
	return fmt.Errorf("%s: %w", prefix, err)
}
