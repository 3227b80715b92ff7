// Package pluginconfig decodes a built-in plugin's configuration section
// strictly: an unknown key is an error that names it, so a misspelt option
// is never silently ignored.
package pluginconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Decode reads raw (JSON; empty leaves into unchanged) into into.
func Decode(plugin string, raw []byte, into any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return fmt.Errorf("plugin %s config: %w", plugin, err)
	}
	return nil
}
