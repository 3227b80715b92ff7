// Package proto is the wire protocol between the Keelson plugin host and a
// plugin process: the go-plugin handshake, the versioned plugin sets and a
// hand-written gRPC service (keelson.plugin.v1.Plugin) whose messages are
// protobuf well-known types (Empty, Duration, Struct), so neither side needs
// generated code and a plugin in another language can speak it with any
// protobuf runtime.
//
// Protocol version 1:
//
//	Describe(Empty) returns (Struct)         // Description
//	Configure(Struct) returns (Empty)        // Configuration
//	Run(Empty) returns (stream Struct)       // Status updates until Stop
//	Stop(Duration) returns (Empty)           // grace period
package proto

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/hashicorp/go-plugin"
	rbacv1 "k8s.io/api/rbac/v1"
)

// ProtocolVersion is the plugin protocol this package speaks. A host offers
// it in the handshake; a plugin built for another version only is refused by
// go-plugin's negotiation before any RPC is made.
const ProtocolVersion = 1

// PluginName is the key of the single plugin in every plugin set.
const PluginName = "keelson"

// Handshake is shared by host and plugins. The cookie is not a secret: it
// only stops a plugin binary from being run by hand by mistake.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "KEELSON_PLUGIN_COOKIE",
	MagicCookieValue: "5a1f0c9e-keelson-plugin-d83b7e42",
}

// Kind says what a plugin does for the cluster.
type Kind string

// The plugin kinds a host accepts.
const (
	KindController    Kind = "controller"
	KindScheduler     Kind = "scheduler"
	KindCloudProvider Kind = "cloud-provider"
	KindIngress       Kind = "ingress"
)

// Kinds lists every valid Kind.
var Kinds = []Kind{KindController, KindScheduler, KindCloudProvider, KindIngress}

// Validate reports whether k is one of Kinds.
func (k Kind) Validate() error {
	if slices.Contains(Kinds, k) {
		return nil
	}
	return fmt.Errorf("plugin kind %q is not one of %v", k, Kinds)
}

// Description is what a plugin says about itself.
type Description struct {
	Name    string `json:"name"`
	Kind    Kind   `json:"kind"`
	Version string `json:"version"`
	// ProtocolVersions are the plugin protocol versions the binary can serve.
	ProtocolVersions []int `json:"protocolVersions"`
	// Rules are the API permissions the plugin needs. The host grants
	// exactly these to the plugin's own identity (a ClusterRole per plugin)
	// unless the server configuration overrides them; checksumming a
	// third-party binary is what approves the rules it declares.
	Rules []rbacv1.PolicyRule `json:"rules,omitempty"`
}

// Credentials is the plugin's API identity: a client certificate or a bearer
// token. The host issues one per plugin and raft term, so that a deposed
// leader's plugins can be fenced by the API server.
type Credentials struct {
	ClientCertPEM []byte `json:"clientCertPEM,omitempty"`
	ClientKeyPEM  []byte `json:"clientKeyPEM,omitempty"`
	BearerToken   string `json:"bearerToken,omitempty"`
}

// Validate checks that exactly one kind of credential is set, completely.
func (c Credentials) Validate() error {
	hasCert := len(c.ClientCertPEM) > 0 || len(c.ClientKeyPEM) > 0
	switch {
	case hasCert && c.BearerToken != "":
		return fmt.Errorf("credentials: set a client certificate or a bearer token, not both")
	case hasCert && (len(c.ClientCertPEM) == 0 || len(c.ClientKeyPEM) == 0):
		return fmt.Errorf("credentials: a client certificate needs both clientCertPEM and clientKeyPEM")
	case !hasCert && c.BearerToken == "":
		return fmt.Errorf("credentials: neither a client certificate nor a bearer token is set")
	}
	return nil
}

// Configuration is everything a plugin needs to reach the API server.
type Configuration struct {
	// APIEndpoint is the API server URL, e.g. https://127.0.0.1:6443.
	APIEndpoint string `json:"apiEndpoint"`
	// CAPEM is the CA bundle that signed the API server's certificate.
	CAPEM       []byte      `json:"caPEM,omitempty"`
	Credentials Credentials `json:"credentials"`
	// Term is the raft term of the leader that started the plugin. It is a
	// string on the wire because Struct numbers are doubles.
	Term uint64 `json:"term,string"`
	// Config is the plugin's own section of the server configuration.
	Config json.RawMessage `json:"config,omitempty"`
	// Node, when set, says the plugin runs as a node plugin on this node,
	// started by its agent with the node's own identity (Term is then 0).
	Node string `json:"node,omitempty"`
	// MembersBroker, when not 0, is the broker id of the host's Members
	// service (node plugins only).
	MembersBroker uint32 `json:"membersBroker,omitempty"`
}

// Validate checks the fields a plugin cannot work without.
func (c Configuration) Validate() error {
	if c.APIEndpoint == "" {
		return fmt.Errorf("configuration: apiEndpoint is empty")
	}
	if err := c.Credentials.Validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if len(c.Config) > 0 && !json.Valid(c.Config) {
		return fmt.Errorf("configuration: config section is not valid JSON")
	}
	return nil
}

// Status is one health update on the Run stream.
type Status struct {
	Ready   bool   `json:"ready"`
	Message string `json:"message,omitempty"`
	// Error is the last error the plugin hit; it may still be running.
	Error string `json:"error,omitempty"`
}

// PluginSets returns the go-plugin sets a plugin serves: impl under every
// version in versions (ProtocolVersion when empty).
func PluginSets(impl Server, versions ...int) map[int]plugin.PluginSet {
	if len(versions) == 0 {
		versions = []int{ProtocolVersion}
	}
	sets := make(map[int]plugin.PluginSet, len(versions))
	for _, v := range versions {
		sets[v] = plugin.PluginSet{PluginName: &GRPCPlugin{Impl: impl}}
	}
	return sets
}

// HostPluginSets returns the go-plugin sets a host offers: the versions this
// package can talk to.
func HostPluginSets() map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{ProtocolVersion: {PluginName: &GRPCPlugin{}}}
}
