package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

type limits struct {
	QPS float32 `json:"kubeAPIQPS"`
}

type nested struct {
	Absolute *int32 `json:"minCandidateNodesAbsolute,omitempty"`
}

type section struct {
	ClusterCIDR string `json:"clusterCIDR"`
	Workers     int    `json:"workers,omitempty"`
	Preemption  nested `json:"preemption"`
	Skipped     string `json:"-"`
	limits
}

func TestDecodeConfigIsStrict(t *testing.T) {
	for _, tc := range []struct {
		raw, want, wantErr, wantKey string
	}{
		{raw: ``, want: "keep"},
		{raw: `null`, want: "keep"},
		{raw: ` {"clusterCIDR":"10.0.0.0/8","workers":2,"kubeAPIQPS":5} `, want: "10.0.0.0/8"},
		{raw: `{"clusterCidr":"10.0.0.0/8"}`, wantKey: "clusterCidr",
			wantErr: `unknown field "clusterCidr"; the fields are clusterCIDR, kubeAPIQPS, preemption, workers (spelt exactly`},
		{raw: `{"clustercidr":"10.0.0.0/8"}`, wantKey: "clustercidr", wantErr: `unknown field "clustercidr"`},
		{raw: `{"kubeApiQps":5}`, wantKey: "kubeApiQps", wantErr: `unknown field "kubeApiQps"`},
		{raw: `{"Skipped":"x"}`, wantKey: "Skipped", wantErr: `unknown field "Skipped"`},
		{raw: `{"preemption":{"minCandidateNodesabsolute":1}}`, wantKey: "preemption.minCandidateNodesabsolute",
			wantErr: `unknown field "preemption.minCandidateNodesabsolute"; the fields are minCandidateNodesAbsolute`},
		{raw: `{"workers":1,"workers":2}`, wantKey: "workers", wantErr: `duplicate field "workers"`},
		{raw: `[1]`, wantErr: "not a valid configuration section"},
		{raw: `{"workers":"many"}`, wantErr: "cannot unmarshal string"},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			s := section{ClusterCIDR: "keep"}
			err := DecodeConfig(json.RawMessage(tc.raw), &s)
			if tc.wantErr == "" {
				if err != nil || s.ClusterCIDR != tc.want {
					t.Fatalf("DecodeConfig = %+v, %v; want clusterCIDR %q", s, err, tc.want)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.wantErr) || ce.Key != tc.wantKey {
				t.Fatalf("DecodeConfig = %v (key %q), want a ConfigError for key %q saying %q", err, keyOf(ce), tc.wantKey, tc.wantErr)
			}
		})
	}
}

func keyOf(ce *ConfigError) string {
	if ce == nil {
		return "<none>"
	}
	return ce.Key
}

// TestConfigErrorsAreNamedAfterTheSection checks the prefix the SDK puts
// on configuration errors leaving a plugin, and only on those.
func TestConfigErrorsAreNamedAfterTheSection(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(env Env) error
		want string
	}{
		{"decode error", func(env Env) error {
			var s section
			return DecodeConfig(env.Config, &s)
		}, `plugins.config.ipam: unknown field "clusterCidr"`},
		{"wrapped validation error", func(Env) error {
			return fmt.Errorf("starting: %w", ConfigErrorf("workers", "workers is %d: set it between 1 and 64", 100))
		}, "plugins.config.ipam: starting: workers is 100"},
		{"already prefixed", func(env Env) error {
			var s section
			if err := DecodeConfig(env.Config, &s); err != nil {
				return fmt.Errorf("plugins.config.ipam: %w", err)
			}
			return nil
		}, `plugins.config.ipam: unknown field`},
		{"other error", func(Env) error { return errors.New("API down") }, "API down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Plugin{Name: "ipam", Kind: KindController, Run: func(_ context.Context, env Env) error { return tc.run(env) }}
			err := RunLocal(context.Background(), p, LocalOptions{
				RESTConfig: &rest.Config{}, Config: json.RawMessage(`{"clusterCidr":"10.0.0.0/8"}`), Logger: slog.New(slog.DiscardHandler),
			})
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Count(err.Error(), "plugins.config") > 1 {
				t.Errorf("RunLocal = %v, want it to start with %q (once)", err, tc.want)
			}
		})
	}
}
