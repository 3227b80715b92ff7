// Package layout holds no code: its test enforces ARCHITECTURE.md's
// dependency rule over every Go file of the module, so `go test ./...`
// fails as soon as a forbidden import is added. The rules, by importer:
//
//   - fsm, config and plugins/proto import nothing of ours;
//   - internal/* (neutral code that servers, agents and plugins share:
//     join protocol, gossip pool, node health) imports only internal/*;
//   - agent/* never imports core/*, plugins/host, plugins/builtin/*, cmd;
//   - core/* never imports agent/*, plugins/builtin/*, plugins/sdk, cmd
//     (core/server runs plugins/host, which speaks plugins/proto);
//   - plugins/host imports only plugins/proto, internal/*, config, fsm;
//   - plugins/sdk imports only plugins/sdk/*, plugins/proto and internal/*;
//   - plugins/builtin/NAME imports only plugins/sdk/*,
//     plugins/builtin/internal/* and its own subpackages (the registry
//     plugins/builtin imports the plugins);
//   - examples import only plugins/sdk/*;
//   - nothing outside e2e and bench imports e2e or bench.
//
// Test files follow the same rules as the package they test, except that
// any test may start real servers through e2e/harness.
package layout
