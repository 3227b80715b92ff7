package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/keelson/keelson/bench/internal/hacluster"
	"github.com/keelson/keelson/bench/internal/latency"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// attempt is one write the writer issued.
type attempt struct {
	Sent  time.Time
	Acked time.Time // when the outcome arrived
	OK    bool
}

// writeFunc makes one write; seq is unique within a repetition.
type writeFunc func(ctx context.Context, seq int) error

// writerSpec paces the writer.
type writerSpec struct {
	// Interval is the time between two attempts; an attempt that fails is
	// thus retried within Interval. It is also the resolution of the
	// failover figure.
	Interval time.Duration
	// Timeout bounds one attempt, so a write stuck on the dead leader does
	// not delay the next one.
	Timeout time.Duration
	// MaxInFlight caps concurrent attempts (Timeout/Interval suffices).
	MaxInFlight int
}

// writer issues a write every Interval until stopped, each with its own
// Timeout, and records every attempt. Attempts overlap: the writer does not
// wait for a stuck one before issuing the next, so the first write the new
// leader can take is issued at most Interval after it can take it.
type writer struct {
	mu       sync.Mutex
	attempts []attempt
	okSince  chan struct{} // signalled on every success
}

func startWriter(ctx context.Context, spec writerSpec, write writeFunc) (w *writer, stop func() []attempt) {
	w = &writer{okSince: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	sem := make(chan struct{}, spec.MaxInFlight)
	wg.Go(func() {
		tick := time.NewTicker(spec.Interval)
		defer tick.Stop()
		for seq := 0; ; seq++ {
			select {
			case <-ctx.Done():
				return
			case sem <- struct{}{}:
			}
			wg.Go(func() {
				defer func() { <-sem }()
				w.one(ctx, spec.Timeout, seq, write)
			})
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	return w, func() []attempt {
		cancel()
		wg.Wait()
		w.mu.Lock()
		defer w.mu.Unlock()
		return slices.Clone(w.attempts)
	}
}

func (w *writer) one(ctx context.Context, timeout time.Duration, seq int, write writeFunc) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	a := attempt{Sent: time.Now()}
	err := write(actx, seq)
	a.Acked, a.OK = time.Now(), err == nil
	if ctx.Err() != nil && err != nil {
		return // cancelled by stop: not an outcome of the server
	}
	w.mu.Lock()
	w.attempts = append(w.attempts, a)
	w.mu.Unlock()
	if a.OK {
		select {
		case w.okSince <- struct{}{}:
		default:
		}
	}
}

// succeededAfter reports whether a write issued at or after t has succeeded.
func (w *writer) succeededAfter(t time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range slices.Backward(w.attempts) {
		if a.OK && !a.Sent.Before(t) {
			return true
		}
	}
	return false
}

// waitSuccessAfter returns once a write issued at or after t has succeeded,
// or fails after timeout.
func (w *writer) waitSuccessAfter(ctx context.Context, t time.Time, timeout time.Duration) error {
	deadline := time.After(timeout)
	for !w.succeededAfter(t) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("no write issued after %s succeeded within %v", t.Format("15:04:05.000"), timeout)
		case <-w.okSince:
		case <-time.After(hacluster.PollInterval):
		}
	}
	return nil
}

// outcome is one repetition's figures, from the attempts and the kill time.
type outcome struct {
	// FailoverSec is from the kill to the acknowledgement of the first
	// successful write issued after the kill. The killed leader cannot have
	// committed such a write, so this is the first write of a new leader.
	FailoverSec float64 `json:"failover_seconds"`
	// FirstAckSec is from the kill to the first successful acknowledgement
	// of any write, including one issued before the kill that the old leader
	// had committed just before dying; at most FailoverSec.
	FirstAckSec float64 `json:"first_ack_seconds"`
	// LastOKBeforeSec is from the last write acknowledged before the kill to
	// the kill: how steady the writes were going in.
	LastOKBeforeSec float64 `json:"last_ok_before_kill_seconds"`
	// Failed counts the attempts that failed (error or timeout) and were
	// acknowledged after the kill.
	Failed int `json:"failed_attempts"`
}

// measure derives the figures of one repetition. ok is false when no write
// issued after t0 succeeded.
func measure(attempts []attempt, t0 time.Time) (o outcome, ok bool) {
	var firstNew, firstAck, lastBefore time.Time
	for _, a := range attempts {
		switch {
		case !a.OK && !a.Acked.Before(t0):
			o.Failed++
		case !a.OK:
		case a.Acked.Before(t0):
			if a.Acked.After(lastBefore) {
				lastBefore = a.Acked
			}
		default:
			if firstAck.IsZero() || a.Acked.Before(firstAck) {
				firstAck = a.Acked
			}
			if !a.Sent.Before(t0) && (firstNew.IsZero() || a.Acked.Before(firstNew)) {
				firstNew = a.Acked
			}
		}
	}
	if firstNew.IsZero() {
		return o, false
	}
	o.FailoverSec = firstNew.Sub(t0).Seconds()
	o.FirstAckSec = firstAck.Sub(t0).Seconds()
	if !lastBefore.IsZero() {
		o.LastOKBeforeSec = t0.Sub(lastBefore).Seconds()
	}
	return o, true
}

// apiWrite creates ConfigMap fo-REP-SEQ in namespace through cs.
func apiWrite(cs kubernetes.Interface, namespace string, rep int) writeFunc {
	cms := cs.CoreV1().ConfigMaps(namespace)
	return func(ctx context.Context, seq int) error {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("fo-%02d-%06d", rep, seq)},
			Data:       map[string]string{"seq": fmt.Sprint(seq)},
		}
		_, err := cms.Create(ctx, cm, metav1.CreateOptions{})
		return err
	}
}

// summary is the distribution of one row's failover figures.
type summary struct {
	P50Sec float64 `json:"p50_seconds"`
	P99Sec float64 `json:"p99_seconds"`
	MaxSec float64 `json:"max_seconds"`
}

func summarizeSeconds(vs []float64) summary {
	d := make([]time.Duration, len(vs))
	for i, v := range vs {
		d[i] = time.Duration(v * float64(time.Second))
	}
	s := latency.Summarize(d)
	return summary{P50Sec: s.P50Ms / 1000, P99Sec: s.P99Ms / 1000, MaxSec: s.MaxMs / 1000}
}
