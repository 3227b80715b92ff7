package host

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name       string
		healthyFor []time.Duration
		want       []time.Duration
	}{
		{"doubles", []time.Duration{0, 0, 0, 0}, []time.Duration{1 * s, 2 * s, 4 * s, 8 * s}},
		{"caps at max", []time.Duration{0, 0, 0, 0, 0, 0, 0, 0}, []time.Duration{1 * s, 2 * s, 4 * s, 8 * s, 16 * s, 32 * s, 60 * s, 60 * s}},
		{"short healthy runs keep growing", []time.Duration{0, 4 * time.Minute, 4 * time.Minute}, []time.Duration{1 * s, 2 * s, 4 * s}},
		{"resets after five healthy minutes", []time.Duration{0, 0, 0, 5 * time.Minute, 0}, []time.Duration{1 * s, 2 * s, 4 * s, 1 * s, 2 * s}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DefaultConfig()
			b := backoff{initial: d.InitialBackoff, max: d.MaxBackoff, reset: d.BackoffReset}
			for i, h := range tt.healthyFor {
				if got := b.failed(h); got != tt.want[i] {
					t.Errorf("failure %d: wait %s, want %s", i+1, got, tt.want[i])
				}
			}
		})
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	ok := Config{APIEndpoint: "https://127.0.0.1:6443", Credentials: testConfig(&syncBuffer{}).Credentials}
	tests := []struct {
		name  string
		cfg   Config
		specs []Spec
	}{
		{"no endpoint", Config{Credentials: ok.Credentials}, nil},
		{"no credentials", Config{APIEndpoint: ok.APIEndpoint}, nil},
		{"max below initial", Config{APIEndpoint: ok.APIEndpoint, Credentials: ok.Credentials, InitialBackoff: time.Minute, MaxBackoff: time.Second}, nil},
		{"duplicate", ok, []Spec{{Name: "a", Path: "/x"}, {Name: "a", Path: "/y"}}},
		{"no name", ok, []Spec{{Path: "/x"}}},
		{"bad config json", ok, []Spec{{Name: "a", Path: "/x", Config: []byte("{")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg, tt.specs); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}
