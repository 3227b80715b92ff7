package scheduler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/placement"
	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/queue"
)

// Config is the scheduler's section of the server configuration (JSON).
// Every field is optional; DefaultConfig documents the defaults.
type Config struct {
	// SchedulerName is the spec.schedulerName of the pods this scheduler
	// binds; pods naming another scheduler are left alone.
	SchedulerName string `json:"schedulerName,omitempty"`
	// PercentageOfNodesToScore bounds the feasible nodes looked for before
	// scoring, in percent of the nodes (0..100); 0 is upstream's adaptive
	// rule (50% minus 1% per 125 nodes, at least 5%, at least 100 nodes).
	PercentageOfNodesToScore *int32 `json:"percentageOfNodesToScore,omitempty"`
	// Scores sets the weight of each score by upstream plugin name
	// (TaintToleration, NodeAffinity, NodeResourcesFit,
	// NodeResourcesBalancedAllocation, PodTopologySpread,
	// InterPodAffinity); 0 disables a score, an omitted one keeps its
	// default weight.
	Scores map[string]int64 `json:"scores,omitempty"`
	// HardPodAffinityWeight scores nodes whose pods' required affinity
	// selects the incoming pod (0..100).
	HardPodAffinityWeight *int32 `json:"hardPodAffinityWeight,omitempty"`
	// DefaultTopologySpread is "System" (upstream's default spreading of
	// pods belonging to a Service or controller over hosts and zones) or
	// "None".
	DefaultTopologySpread string `json:"defaultTopologySpread,omitempty"`
	// Preemption configures evicting lower-priority pods.
	Preemption PreemptionConfig `json:"preemption,omitempty"`
	// PodInitialBackoff and PodMaxBackoff bound the retry delay of a pod
	// that failed (Go durations, e.g. "1s").
	PodInitialBackoff string `json:"podInitialBackoff,omitempty"`
	PodMaxBackoff     string `json:"podMaxBackoff,omitempty"`
	// PodMaxInUnschedulable is how long an unschedulable pod waits for a
	// cluster event before it is retried anyway.
	PodMaxInUnschedulable string `json:"podMaxInUnschedulable,omitempty"`
	// Parallelism is how many goroutines filter and score nodes.
	Parallelism int `json:"parallelism,omitempty"`
	// BindConcurrency bounds the bindings in flight.
	BindConcurrency int `json:"bindConcurrency,omitempty"`
	// ClientQPS and ClientBurst rate-limit the scheduler's API requests;
	// a scheduler binding thousands of pods needs far more than client-go's
	// default of 5.
	ClientQPS   float32 `json:"clientQPS,omitempty"`
	ClientBurst int     `json:"clientBurst,omitempty"`
}

// PreemptionConfig configures preemption.
type PreemptionConfig struct {
	// Disabled turns preemption off.
	Disabled bool `json:"disabled,omitempty"`
	// MinCandidateNodesPercentage and MinCandidateNodesAbsolute bound how
	// many nodes a preemption evaluates: the larger of the two, at most
	// all nodes (upstream: 10 and 100).
	MinCandidateNodesPercentage *int32 `json:"minCandidateNodesPercentage,omitempty"`
	MinCandidateNodesAbsolute   *int32 `json:"minCandidateNodesAbsolute,omitempty"`
}

// scoreNames maps the configurable score names to their weight fields.
var scoreNames = map[string]func(w *placement.Weights) *int64{
	"TaintToleration":                 func(w *placement.Weights) *int64 { return &w.TaintToleration },
	"NodeAffinity":                    func(w *placement.Weights) *int64 { return &w.NodeAffinity },
	"NodeResourcesFit":                func(w *placement.Weights) *int64 { return &w.NodeResourcesFit },
	"NodeResourcesBalancedAllocation": func(w *placement.Weights) *int64 { return &w.BalancedAllocation },
	"PodTopologySpread":               func(w *placement.Weights) *int64 { return &w.PodTopologySpread },
	"InterPodAffinity":                func(w *placement.Weights) *int64 { return &w.InterPodAffinity },
}

// settings is a validated Config with its defaults applied.
type settings struct {
	schedulerName   string
	engine          placement.Config
	queue           queue.Config
	bindConcurrency int
	clientQPS       float32
	clientBurst     int
}

// Defaults of the fields without an upstream counterpart.
const (
	defaultBindConcurrency = 64
	defaultClientQPS       = 5000
	defaultClientBurst     = 10000
	maxScoreWeight         = 100
)

// parseConfig decodes and validates the plugin's config section; an empty
// section means all defaults. Errors name the field and what is allowed.
func parseConfig(raw []byte) (settings, error) {
	var c Config
	if len(bytes.TrimSpace(raw)) > 0 && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return settings{}, fmt.Errorf("scheduler config: %w", err)
		}
	}
	return c.resolve()
}

func (c *Config) resolve() (settings, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("scheduler config: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	s := settings{
		schedulerName: or(c.SchedulerName, "default-scheduler"),
		engine: placement.Config{
			Weights:                     placement.DefaultWeights(),
			HardPodAffinityWeight:       1,
			SystemDefaultSpreading:      true,
			Preemption:                  !c.Preemption.Disabled,
			MinCandidateNodesPercentage: 10,
			MinCandidateNodesAbsolute:   100,
			Parallelism:                 c.Parallelism,
		},
		bindConcurrency: c.BindConcurrency,
		clientQPS:       c.ClientQPS,
		clientBurst:     c.ClientBurst,
	}
	if p := c.PercentageOfNodesToScore; p != nil {
		if *p < 0 || *p > 100 {
			bad("percentageOfNodesToScore", "must be between 0 (adaptive) and 100, got %d", *p)
		}
		s.engine.PercentageOfNodesToScore = *p
	}
	for _, name := range slices.Sorted(maps.Keys(c.Scores)) {
		field, ok := scoreNames[name]
		if !ok {
			bad("scores."+name, "unknown score; known scores: %s", strings.Join(slices.Sorted(maps.Keys(scoreNames)), ", "))
			continue
		}
		w := c.Scores[name]
		if w < 0 || w > maxScoreWeight {
			bad("scores."+name, "weight must be between 0 (off) and %d, got %d", maxScoreWeight, w)
		}
		*field(&s.engine.Weights) = w
	}
	if w := c.HardPodAffinityWeight; w != nil {
		if *w < 0 || *w > 100 {
			bad("hardPodAffinityWeight", "must be between 0 and 100, got %d", *w)
		}
		s.engine.HardPodAffinityWeight = *w
	}
	switch c.DefaultTopologySpread {
	case "", "System":
	case "None":
		s.engine.SystemDefaultSpreading = false
	default:
		bad("defaultTopologySpread", "must be System or None, got %q", c.DefaultTopologySpread)
	}
	if p := c.Preemption.MinCandidateNodesPercentage; p != nil {
		if *p < 0 || *p > 100 {
			bad("preemption.minCandidateNodesPercentage", "must be between 0 and 100, got %d", *p)
		}
		s.engine.MinCandidateNodesPercentage = *p
	}
	if a := c.Preemption.MinCandidateNodesAbsolute; a != nil {
		if *a < 0 {
			bad("preemption.minCandidateNodesAbsolute", "must not be negative, got %d", *a)
		}
		s.engine.MinCandidateNodesAbsolute = *a
	}
	if s.engine.MinCandidateNodesPercentage == 0 && s.engine.MinCandidateNodesAbsolute == 0 {
		bad("preemption", "minCandidateNodesPercentage and minCandidateNodesAbsolute cannot both be 0")
	}
	s.queue.InitialBackoff = duration(c.PodInitialBackoff, "podInitialBackoff", time.Second, bad)
	s.queue.MaxBackoff = duration(c.PodMaxBackoff, "podMaxBackoff", 10*time.Second, bad)
	s.queue.MaxInUnschedulable = duration(c.PodMaxInUnschedulable, "podMaxInUnschedulable", 5*time.Minute, bad)
	if s.queue.MaxBackoff < s.queue.InitialBackoff {
		bad("podMaxBackoff", "must be at least podInitialBackoff (%s), got %s", s.queue.InitialBackoff, s.queue.MaxBackoff)
	}
	nonNegative := func(field string, v int, def int) int {
		if v < 0 {
			bad(field, "must not be negative, got %d", v)
		}
		if v == 0 {
			return def
		}
		return v
	}
	s.engine.Parallelism = nonNegative("parallelism", c.Parallelism, runtime.GOMAXPROCS(0))
	s.bindConcurrency = nonNegative("bindConcurrency", c.BindConcurrency, defaultBindConcurrency)
	s.clientBurst = nonNegative("clientBurst", c.ClientBurst, defaultClientBurst)
	if c.ClientQPS < 0 {
		bad("clientQPS", "must not be negative, got %g", c.ClientQPS)
	}
	if s.clientQPS <= 0 {
		s.clientQPS = defaultClientQPS
	}
	return s, errors.Join(errs...)
}

// duration parses a Go duration field; empty means def.
func duration(v, field string, def time.Duration, bad func(string, string, ...any)) time.Duration {
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		bad(field, "invalid duration %q (write e.g. \"1s\" or \"500ms\")", v)
		return def
	}
	if d <= 0 {
		bad(field, "must be positive, got %s", v)
		return def
	}
	return d
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
