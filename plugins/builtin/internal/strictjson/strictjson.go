// Package strictjson decodes a plugin's configuration section strictly:
// every key must be one of the target struct's JSON field names, spelt
// exactly. encoding/json alone matches keys case-insensitively, so
// "clusterCidr" would silently set clusterCIDR, and a misspelt key such as
// "nodeCidrMaskSize" on a nested struct would be ignored.
package strictjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Decode reads raw (a JSON object; empty leaves into unchanged) into into,
// a pointer to a struct, refusing unknown keys and keys whose case differs
// from the field's, with an error naming the key and the known ones.
func Decode(raw []byte, into any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	known := fieldNames(reflect.TypeOf(into).Elem())
	for k := range keys {
		if !slices.Contains(known, k) {
			return fmt.Errorf("unknown field %q; the fields are %s", k, strings.Join(known, ", "))
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(into)
}

// fieldNames lists the JSON names of a struct's exported fields.
func fieldNames(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
