package builtin

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/keelson/keelson/plugins/sdk"
)

// TestEveryPluginRefusesMiscasedKeys runs every built-in with a config
// section holding a key spelt with the wrong case: each must refuse it
// before doing anything else, naming its section and the key, as
// sdk.DecodeConfig does (encoding/json alone would take "clusterCidr" for
// nodeipam's clusterCIDR).
func TestEveryPluginRefusesMiscasedKeys(t *testing.T) {
	type part struct {
		p    sdk.Plugin
		node string // the node a node part runs on; "" for a leader part
	}
	var parts []part
	for _, p := range All() {
		parts = append(parts, part{p, ""})
	}
	for _, p := range NodePlugins() {
		parts = append(parts, part{p, "node-1"})
	}
	for _, pt := range parts {
		p := pt.p
		for _, key := range []string{"clusterCidr", "Workers"} {
			t.Run(p.Name+"/"+pt.node+"/"+key, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				err := sdk.RunLocal(ctx, p, sdk.LocalOptions{
					// Nothing listens there: a plugin that reached for the
					// API before reading its config would fail differently.
					RESTConfig: &rest.Config{Host: "https://127.0.0.1:1"},
					Config:     json.RawMessage(`{"` + key + `": "10.42.0.0/16"}`),
					Logger:     slog.New(slog.DiscardHandler),
					Node:       pt.node,
				})
				want := "plugins.config." + p.Name + ": "
				if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), `unknown field "`+key+`"`) {
					t.Errorf("RunLocal = %v; want an error starting %q naming the key %q", err, want, key)
				}
			})
		}
	}
}
