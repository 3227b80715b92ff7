package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/keelson/keelson/bench/internal/configmapload"
	"github.com/keelson/keelson/bench/internal/hacluster"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// failoverNamespace holds the ConfigMaps the failover writer creates.
const failoverNamespace = "habench-failover"

// repetition is one leader kill and what followed.
type repetition struct {
	Rep       int    `json:"rep"`
	Killed    string `json:"killed_leader"`
	Target    string `json:"written_through"`
	NewLeader string `json:"new_leader"`
	TermAfter uint64 `json:"term_after"`
	outcome
	// DetectSec is from the kill to the first survivor logging that its
	// heartbeat timeout passed and it starts an election; ElectedSec to the
	// new leader logging that it entered the leader state. Both from the
	// servers' logs (millisecond stamps); -1 when the line was not found.
	DetectSec  float64 `json:"election_start_seconds"`
	ElectedSec float64 `json:"elected_seconds"`
	// TimedOut: no write succeeded within -failover-timeout; FailoverSec
	// then holds that timeout.
	TimedOut bool `json:"timed_out"`
	// RejoinSec is from restarting the killed server to the whole cluster
	// healthy again.
	RejoinSec float64 `json:"rejoin_seconds"`
}

// failoverRow is one way of writing (Kubernetes API or etcd API) and its
// repetitions.
type failoverRow struct {
	Name        string       `json:"name"`
	Description string       `json:"description"`
	Failover    summary      `json:"failover"`
	FirstAck    summary      `json:"first_ack"`
	Elected     summary      `json:"elected"`
	Reps        []repetition `json:"repetitions"`
}

// runFailover kills the leader of c o.reps times, each time writing through
// a follower (the two followers in turn) and restarting the killed server
// after the first successful write.
func runFailover(ctx context.Context, log *slog.Logger, c *hacluster.Cluster, name string, o options) (failoverRow, error) {
	row := failoverRow{Name: name}
	if c.APIOn {
		row.Description = "ConfigMap create through a follower's Kubernetes API (client-go)"
	} else {
		row.Description = "etcd Put through a follower's etcd API, store only (--disable-apiserver)"
	}
	var failover, firstAck, elected []float64
	for rep := range o.reps {
		r, err := oneFailover(ctx, log, c, rep, o)
		if err != nil {
			return row, fmt.Errorf("%s failover, repetition %d of %d: %w", name, rep+1, o.reps, err)
		}
		log.Info("failover", "row", name, "rep", rep+1, "killed", r.Killed, "through", r.Target, "new_leader", r.NewLeader,
			"failover_s", round3(r.FailoverSec), "elected_s", round3(r.ElectedSec), "first_ack_s", round3(r.FirstAckSec), "failed_attempts", r.Failed,
			"timed_out", r.TimedOut, "rejoin_s", round3(r.RejoinSec))
		row.Reps = append(row.Reps, r)
		failover = append(failover, r.FailoverSec)
		firstAck = append(firstAck, r.FirstAckSec)
		if r.ElectedSec >= 0 {
			elected = append(elected, r.ElectedSec)
		}
	}
	row.Failover, row.FirstAck, row.Elected = summarizeSeconds(failover), summarizeSeconds(firstAck), summarizeSeconds(elected)
	return row, nil
}

func oneFailover(ctx context.Context, log *slog.Logger, c *hacluster.Cluster, rep int, o options) (repetition, error) {
	leader, _, err := c.WaitHealthy(ctx, o.readyTimeout)
	if err != nil {
		return repetition{}, err
	}
	if err := hacluster.Sleep(ctx, o.settle); err != nil {
		return repetition{}, err
	}
	target := c.Followers(leader)[rep%2]
	r := repetition{Rep: rep + 1, Killed: leader.Name, Target: target.Name}
	write, err := failoverWrite(c, target, rep)
	if err != nil {
		return r, err
	}
	w, stop := startWriter(ctx, o.writer, write)
	// Writes must be flowing before the kill, or the figure would include
	// the writer's own start.
	if err := w.waitSuccessAfter(ctx, time.Now().Add(o.writer.Interval), 10*time.Second); err != nil {
		stop()
		return r, target.Proc.Failure(fmt.Errorf("writes through %s before the kill: %w", target.Name, err))
	}
	t0, err := c.Kill(leader)
	if err != nil {
		stop()
		return r, err
	}
	waitErr := w.waitSuccessAfter(ctx, t0, o.failoverTimeout)
	attempts := stop()
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	out, ok := measure(attempts, t0)
	r.outcome = out
	if !ok {
		log.Warn("no write succeeded after the kill", "through", target.Name, "err", waitErr)
		r.TimedOut, r.FailoverSec, r.FirstAckSec = true, o.failoverTimeout.Seconds(), o.failoverTimeout.Seconds()
	}
	sctx, cancel := context.WithTimeout(ctx, hacluster.ProbeTimeout)
	if st, err := target.Etcd.Status(sctx, target.EtcdAddr(c.Ports)); err == nil {
		r.TermAfter = st.RaftTerm
		if s := c.ByID(st.Leader); s != nil {
			r.NewLeader = s.Name
		}
	}
	cancel()
	var newLeader *hacluster.Server
	for _, s := range c.Servers {
		if s.Name == r.NewLeader {
			newLeader = s
		}
	}
	r.DetectSec, r.ElectedSec = raftSteps(c.Followers(leader), newLeader, t0)

	rejoinStart := time.Now()
	if err := c.Launch(leader); err != nil {
		return r, err
	}
	if _, _, err := c.WaitHealthy(ctx, o.readyTimeout); err != nil {
		return r, fmt.Errorf("after restarting %s: %w", leader.Name, err)
	}
	r.RejoinSec = time.Since(rejoinStart).Seconds()
	return r, nil
}

// failoverWrite is the failover write through target: a ConfigMap create when
// the servers run kube-apiserver, else an etcd Put of a new key.
func failoverWrite(c *hacluster.Cluster, target *hacluster.Server, rep int) (writeFunc, error) {
	if !c.APIOn {
		return func(ctx context.Context, seq int) error {
			_, err := target.Etcd.Put(ctx, fmt.Sprintf("/habench/failover/%02d/%06d", rep, seq), "x")
			return err
		}, nil
	}
	cfg, err := c.RESTConfig(target)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("clientset for %s: %w", cfg.Host, err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: failoverNamespace}}
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create namespace %s through %s: %w", failoverNamespace, target.Name, err)
	}
	return apiWrite(cs, failoverNamespace, rep), nil
}

// throughputRow is the create workload against one server.
type throughputRow struct {
	Name   string               `json:"name"`
	Result configmapload.Result `json:"result"`
}

// runThroughput runs the create workload against s in its own namespace.
func runThroughput(ctx context.Context, log *slog.Logger, c *hacluster.Cluster, s *hacluster.Server, name, namespace string, w configmapload.Workload) (throughputRow, error) {
	cfg, err := c.RESTConfig(s)
	if err != nil {
		return throughputRow{}, err
	}
	log.Info("creating", "row", name, "server", s.Name, "configmaps", w.Total, "workers", w.Workers)
	res, err := configmapload.Run(ctx, cfg, namespace, w)
	if err != nil {
		if ctx.Err() != nil {
			return throughputRow{}, ctx.Err()
		}
		return throughputRow{}, s.Proc.Failure(fmt.Errorf("%s: %w", name, err))
	}
	log.Info("created", "row", name, "configmaps", res.Creates, "per_second", int(res.CreatesPerSec),
		"p50_ms", round3(res.P50Ms), "p99_ms", round3(res.P99Ms))
	return throughputRow{Name: name, Result: res}, nil
}
