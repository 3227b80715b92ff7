package main

import (
	"context"
	"fmt"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/keelson/keelson/agent"
	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/plugins/host"
	"github.com/keelson/keelson/plugins/host/nodehost"
)

// runNodePlugins is the agent's node plugin host (agent.Options.NodePlugins):
// plugins/host/nodehost acting with the node's own credentials.
func runNodePlugins(ctx context.Context, env agent.NodePluginEnv) error {
	cert, key, err := env.Credentials()
	if err != nil {
		return err
	}
	rc := &rest.Config{
		Host:            env.APIEndpoint,
		TLSClientConfig: rest.TLSClientConfig{CAData: env.CAPEM, CertData: cert, KeyData: key},
		UserAgent:       "keelson-node-plugins/" + env.NodeName,
	}
	builtins, err := host.ResolveBuiltinBinary(env.DataDir)
	if err != nil {
		return fmt.Errorf("node plugins: %w", err)
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("node plugins: API client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("node plugins: API client: %w", err)
	}
	// The agent's own directory: a server's embedded agent shares the
	// server's data dir, whose socket directory is the server's plugins'.
	sockets, err := host.PrepareSocketDir(config.AgentDir(env.DataDir))
	if err != nil {
		return fmt.Errorf("node plugins: %w", err)
	}
	defer host.RemoveRunDirs(config.AgentDir(env.DataDir)) //nolint:errcheck // best effort: the next start empties it
	return nodehost.Run(ctx, nodehost.Config{
		SocketDir:       sockets,
		NodeName:        env.NodeName,
		PluginDir:       env.PluginDir,
		Builtins:        builtins,
		APIEndpoint:     env.APIEndpoint,
		CAPEM:           env.CAPEM,
		NodeCredentials: env.Credentials,
		Members:         env.Members,
		Kube:            kube,
		Dyn:             dyn,
		Logger:          env.Logger,
		Metrics:         env.Metrics,
	})
}
