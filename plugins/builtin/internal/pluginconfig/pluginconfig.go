// Package pluginconfig holds what built-in plugins' configuration sections
// share: strict decoding (an unknown key is an error that names it, so a
// misspelt option is never silently ignored) and client rate limits.
package pluginconfig

import (
	"bytes"
	"encoding/json"
	"fmt"

	"k8s.io/client-go/rest"
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

// ClientLimits are a plugin's client-side limits on API requests, as
// kube-controller-manager's --kube-api-qps and --kube-api-burst; zero
// keeps the SDK's (50 requests/s, bursts of 100).
type ClientLimits struct {
	KubeAPIQPS   float32 `json:"kubeAPIQPS"`
	KubeAPIBurst int     `json:"kubeAPIBurst"`
}

// Validate checks the limits, naming the plugin and field at fault.
func (l ClientLimits) Validate(plugin string) error {
	if l.KubeAPIQPS < 0 {
		return fmt.Errorf("plugin %s config: kubeAPIQPS is %g: set a positive rate, or leave it out for the default", plugin, l.KubeAPIQPS)
	}
	if l.KubeAPIBurst < 0 {
		return fmt.Errorf("plugin %s config: kubeAPIBurst is %d: set a positive burst, or leave it out for the default", plugin, l.KubeAPIBurst)
	}
	return nil
}

// Apply returns a copy of c with the limits set.
func (l ClientLimits) Apply(c *rest.Config) *rest.Config {
	c = rest.CopyConfig(c)
	if l.KubeAPIQPS > 0 {
		c.QPS = l.KubeAPIQPS
	}
	if l.KubeAPIBurst > 0 {
		c.Burst = l.KubeAPIBurst
	}
	return c
}
