package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"k8s.io/client-go/rest"

	"github.com/keelson/keelson/plugins/proto"
)

// LocalOptions configure RunLocal.
type LocalOptions struct {
	// RESTConfig reaches the API server (in tests usually the admin's).
	RESTConfig *rest.Config
	// Config is the plugin's configuration section (JSON; may be empty).
	Config json.RawMessage
	// Term is handed to the plugin as Env.Term.
	Term uint64
	// Logger receives the plugin's logs; slog.Default() when nil.
	Logger *slog.Logger
	// Status, when set, receives every health report the plugin makes.
	Status func(ready bool, message, err string)
	// Node, when set, runs the plugin's node part (RunNode) as on that node,
	// without a gossip member view.
	Node string
}

// RunLocal runs p's work in this process, without go-plugin, until ctx is
// cancelled: for tests of a plugin's logic and for benchmarks comparing a
// controller in-process with the same controller behind the plugin
// boundary. It returns what p.Run returns (a configuration error prefixed
// as Serve prefixes it).
func RunLocal(ctx context.Context, p Plugin, o LocalOptions) error {
	if err := p.validate(); err != nil {
		return err
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("plugin", p.Name)
	env := Env{RESTConfig: rest.CopyConfig(o.RESTConfig), Term: o.Term, Config: o.Config, Logger: logger, Node: o.Node}
	env.report = func(st proto.Status) {
		if o.Status != nil {
			o.Status(st.Ready, st.Message, st.Error)
		}
	}
	run := p.Run
	if o.Node != "" {
		run = p.RunNode
	}
	if run == nil {
		return fmt.Errorf("sdk: plugin %q has no %s part", p.Name, map[bool]string{true: "node (RunNode)", false: "leader (Run)"}[o.Node != ""])
	}
	return withConfigPrefix(p.Name, run(ctx, env))
}
