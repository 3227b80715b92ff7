package scheduler

import (
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/placement"
	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/queue"
	"github.com/keelson/keelson/plugins/sdk"
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
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return settings{}, fmt.Errorf("plugins.config.%s: %w", Name, err)
	}
	return c.resolve()
}

// fieldErrors collects "plugins.config.scheduler: FIELD: what is wrong"
// errors.
type fieldErrors []error

func (e *fieldErrors) bad(field, format string, args ...any) {
	*e = append(*e, fmt.Errorf("plugins.config.%s: %w", Name,
		sdk.ConfigErrorf(field, "%s: %s", field, fmt.Sprintf(format, args...))))
}

func (c *Config) resolve() (settings, error) {
	var errs fieldErrors
	s := settings{schedulerName: or(c.SchedulerName, "default-scheduler")}
	s.engine = c.engineConfig(&errs)
	s.queue = c.queueConfig(&errs)
	nonNegative := func(field string, v int, def int) int {
		if v < 0 {
			errs.bad(field, "must not be negative, got %d", v)
		}
		if v <= 0 {
			return def
		}
		return v
	}
	s.engine.Parallelism = nonNegative("parallelism", c.Parallelism, runtime.GOMAXPROCS(0))
	s.bindConcurrency = nonNegative("bindConcurrency", c.BindConcurrency, defaultBindConcurrency)
	s.clientBurst = nonNegative("clientBurst", c.ClientBurst, defaultClientBurst)
	s.clientQPS = c.ClientQPS
	if c.ClientQPS < 0 {
		errs.bad("clientQPS", "must not be negative, got %g", c.ClientQPS)
	}
	if s.clientQPS <= 0 {
		s.clientQPS = defaultClientQPS
	}
	return s, errors.Join(errs...)
}

// engineConfig resolves what placement needs: sampling, weights,
// spreading and preemption.
func (c *Config) engineConfig(errs *fieldErrors) placement.Config {
	e := placement.Config{
		Weights:                     placement.DefaultWeights(),
		HardPodAffinityWeight:       1,
		SystemDefaultSpreading:      true,
		Preemption:                  !c.Preemption.Disabled,
		MinCandidateNodesPercentage: 10,
		MinCandidateNodesAbsolute:   100,
	}
	if p := c.PercentageOfNodesToScore; p != nil {
		if *p < 0 || *p > 100 {
			errs.bad("percentageOfNodesToScore", "must be between 0 (adaptive) and 100, got %d", *p)
		}
		e.PercentageOfNodesToScore = *p
	}
	for _, name := range slices.Sorted(maps.Keys(c.Scores)) {
		field, ok := scoreNames[name]
		if !ok {
			errs.bad("scores."+name, "unknown score; known scores: %s", strings.Join(slices.Sorted(maps.Keys(scoreNames)), ", "))
			continue
		}
		w := c.Scores[name]
		if w < 0 || w > maxScoreWeight {
			errs.bad("scores."+name, "weight must be between 0 (off) and %d, got %d", maxScoreWeight, w)
		}
		*field(&e.Weights) = w
	}
	if w := c.HardPodAffinityWeight; w != nil {
		if *w < 0 || *w > 100 {
			errs.bad("hardPodAffinityWeight", "must be between 0 and 100, got %d", *w)
		}
		e.HardPodAffinityWeight = *w
	}
	switch c.DefaultTopologySpread {
	case "", "System":
	case "None":
		e.SystemDefaultSpreading = false
	default:
		errs.bad("defaultTopologySpread", "must be System or None, got %q", c.DefaultTopologySpread)
	}
	if p := c.Preemption.MinCandidateNodesPercentage; p != nil {
		if *p < 0 || *p > 100 {
			errs.bad("preemption.minCandidateNodesPercentage", "must be between 0 and 100, got %d", *p)
		}
		e.MinCandidateNodesPercentage = *p
	}
	if a := c.Preemption.MinCandidateNodesAbsolute; a != nil {
		if *a < 0 {
			errs.bad("preemption.minCandidateNodesAbsolute", "must not be negative, got %d", *a)
		}
		e.MinCandidateNodesAbsolute = *a
	}
	if e.MinCandidateNodesPercentage == 0 && e.MinCandidateNodesAbsolute == 0 {
		errs.bad("preemption", "minCandidateNodesPercentage and minCandidateNodesAbsolute cannot both be 0")
	}
	return e
}

// queueConfig resolves the retry timings.
func (c *Config) queueConfig(errs *fieldErrors) queue.Config {
	q := queue.Config{
		InitialBackoff:     duration(c.PodInitialBackoff, "podInitialBackoff", time.Second, errs),
		MaxBackoff:         duration(c.PodMaxBackoff, "podMaxBackoff", 10*time.Second, errs),
		MaxInUnschedulable: duration(c.PodMaxInUnschedulable, "podMaxInUnschedulable", 5*time.Minute, errs),
	}
	if q.MaxBackoff < q.InitialBackoff {
		errs.bad("podMaxBackoff", "must be at least podInitialBackoff (%s), got %s", q.InitialBackoff, q.MaxBackoff)
	}
	return q
}

// duration parses a Go duration field; empty means def.
func duration(v, field string, def time.Duration, errs *fieldErrors) time.Duration {
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		errs.bad(field, "invalid duration %q (write e.g. \"1s\" or \"500ms\")", v)
		return def
	}
	if d <= 0 {
		errs.bad(field, "must be positive, got %s", v)
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
