package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keelson/keelson/plugins/proto"
)

// NodePluginEnv is what the agent hands the node plugin host, which cmd
// wires in (the agent never imports plugins/host): where the API is, the
// node's own identity, its gossip view and its plugin directory.
type NodePluginEnv struct {
	NodeName string
	// APIEndpoint is the agent's failover proxy to the API servers, which
	// node plugins reach too; CAPEM is the CA that signed the servers.
	APIEndpoint string
	CAPEM       []byte
	// Credentials returns the node's current client certificate and key:
	// node plugins act as the node (system:node:NAME), no more.
	Credentials func() (certPEM, keyPEM []byte, err error)
	// Members is the node's view of the gossip pool; nil for a server's
	// embedded agent unless Options.Members gives one.
	Members proto.MembersServer
	// PluginDir holds the third-party node plugin executables.
	PluginDir string
	// DataDir is the agent's data directory, where the built-in plugins
	// executable embedded in keelson is extracted.
	DataDir string
	Logger  *slog.Logger
	// Metrics is the agent's registry, served on its /metrics: the host
	// relays its node plugins' metrics there.
	Metrics prometheus.Registerer
}

// runNodePlugins runs the node plugin host until ctx ends; its failure is
// logged, never the agent's: pods keep running without node plugins.
func (a *Agent) runNodePlugins(ctx context.Context) {
	if a.opts.NodePlugins == nil {
		return
	}
	caPEM, err := os.ReadFile(a.creds.CAFile())
	if err != nil {
		a.log.Error("node plugins not started: reading the cluster CA", "err", err)
		return
	}
	env := NodePluginEnv{
		NodeName:    a.cfg.NodeName,
		APIEndpoint: a.proxy.URL(),
		CAPEM:       caPEM,
		Credentials: func() ([]byte, []byte, error) {
			cert, err := os.ReadFile(a.creds.ClientCert())
			if err != nil {
				return nil, nil, fmt.Errorf("reading the node's client certificate: %w", err)
			}
			key, err := os.ReadFile(a.creds.ClientKey())
			if err != nil {
				return nil, nil, fmt.Errorf("reading the node's client key: %w", err)
			}
			return cert, key, nil
		},
		Members:   a.opts.Members,
		PluginDir: a.cfg.PluginDir(),
		DataDir:   a.cfg.DataDir,
		Logger:    a.log.With("component", "node-plugins"),
		Metrics:   a.metrics.registry,
	}
	if env.Members == nil && !a.opts.Embedded {
		env.Members = &gossipView{agent: a, poll: time.Second}
	}
	if err := a.opts.NodePlugins(ctx, env); err != nil && ctx.Err() == nil {
		a.log.Error("node plugin host stopped", "err", err)
	}
}

// gossipView serves the node's gossip membership to node plugins
// (proto.MembersServer): the list after every membership change, and
// polled too, since the member itself is replaced when the agent rejoins.
type gossipView struct {
	agent *Agent
	poll  time.Duration
}

func (g *gossipView) Watch(ctx context.Context, send func(proto.MemberList) error) error {
	t := time.NewTicker(g.poll)
	defer t.Stop()
	var last []proto.Member
	first := true
	for {
		var changed <-chan struct{}
		cur := []proto.Member{}
		if m := g.agent.member(); m != nil {
			changed = m.Changes()
			for _, sm := range m.Members() {
				pm := proto.Member{Name: sm.Name, Server: sm.IsServer(), Status: proto.MemberStatus(sm.Status)}
				if host, _, err := net.SplitHostPort(sm.GossipAddr); err == nil {
					pm.Addr = host
				}
				cur = append(cur, pm)
			}
		}
		if first || !slices.Equal(cur, last) {
			if err := send(proto.MemberList{Members: cur}); err != nil {
				return err
			}
			last, first = cur, false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-t.C:
		}
	}
}
