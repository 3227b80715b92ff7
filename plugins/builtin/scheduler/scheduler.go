package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/events"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/placement"
	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/queue"
)

// flushInterval is how often unschedulable pods that waited too long for
// an event are retried (upstream: 30 s).
const flushInterval = 30 * time.Second

// Scheduler binds pending pods to nodes. One goroutine, the loop in Run,
// owns the cluster model, the queue and the nominations: informer handlers
// and API goroutines only append to the inbox, and the loop applies what
// they report between two scheduling cycles. A cycle therefore reads a
// consistent state without copying it, and filters read it in parallel
// while the loop waits.
type Scheduler struct {
	cfg      settings
	log      *slog.Logger
	client   kubernetes.Interface
	recorder events.EventRecorder
	clock    clockwork.Clock
	pods     corelisters.PodLister
	volumes  volumeListers

	cache     *cluster.Cache
	queue     *queue.Queue
	engine    *placement.Engine
	nominator *nominator
	inbox     inbox
	// assumed are the volume choices of bindings in flight.
	assumed *volumeAssumptions

	// bindSlots bounds the bindings in flight; apiSlots the other writes
	// (status updates, preemption).
	bindSlots chan struct{}
	apiSlots  chan struct{}
	inflight  sync.WaitGroup
}

// deps are what a Scheduler needs from outside.
type deps struct {
	client   kubernetes.Interface
	recorder events.EventRecorder
	listers  placement.Listers
	pods     corelisters.PodLister
	clock    clockwork.Clock
	rand     *rand.Rand
	log      *slog.Logger
}

func newScheduler(cfg settings, d deps) *Scheduler {
	s := &Scheduler{
		cfg:       cfg,
		log:       d.log,
		client:    d.client,
		recorder:  d.recorder,
		clock:     d.clock,
		pods:      d.pods,
		volumes:   volumeListers{claims: d.listers.PVCs, volumes: d.listers.PVs},
		cache:     cluster.NewCache(),
		queue:     queue.New(cfg.queue, d.clock),
		engine:    placement.New(cfg.engine, d.listers, d.rand),
		nominator: newNominator(),
		inbox:     newInbox(),
		bindSlots: make(chan struct{}, cfg.bindConcurrency),
		apiSlots:  make(chan struct{}, cfg.bindConcurrency),
		assumed:   newVolumeAssumptions(),
	}
	s.engine.SetVolumeAssumptions(s.assumed)
	return s
}

// Run schedules pods until ctx is cancelled, then waits for the API calls
// in flight.
func (s *Scheduler) Run(ctx context.Context) error {
	defer s.inflight.Wait()
	flush := s.clock.NewTicker(flushInterval)
	defer flush.Stop()
	for ctx.Err() == nil {
		s.processInbox(ctx)
		select {
		case <-flush.Chan():
			if n := s.queue.FlushUnschedulable(); n > 0 {
				s.log.Info("retrying pods unschedulable for too long", "pods", n)
			}
		default:
		}
		qp := s.queue.Pop()
		if qp == nil {
			s.idle(ctx, flush)
			continue
		}
		s.scheduleOne(ctx, qp)
	}
	return nil
}

// idle waits for news: an inbox item, the end of a backoff, the flush
// tick or cancellation.
func (s *Scheduler) idle(ctx context.Context, flush clockwork.Ticker) {
	var wake <-chan time.Time
	if t, ok := s.queue.NextBackoff(); ok {
		timer := s.clock.NewTimer(t.Sub(s.clock.Now()))
		defer timer.Stop()
		wake = timer.Chan()
	}
	select {
	case <-ctx.Done():
	case <-s.inbox.signal:
	case <-wake:
	case <-flush.Chan():
		s.queue.FlushUnschedulable()
	}
}

// scheduleOne runs one scheduling cycle: place the pod, assume it on the
// node and hand the binding to a goroutine; or record why it does not fit
// and try preemption.
func (s *Scheduler) scheduleOne(ctx context.Context, qp *queue.QueuedPod) {
	pi := qp.Info
	res, err := s.engine.Schedule(ctx, s.cache, s.nominator, pi)
	if err != nil {
		s.handleFailure(ctx, qp, err)
		return
	}
	assumed, err := s.cache.AssumePod(pi, res.Node)
	if err != nil {
		s.handleFailure(ctx, qp, err)
		return
	}
	s.nominator.remove(pi.Pod.UID)
	if res.Volumes != nil {
		s.assumed.assume(pi.Pod.UID, res.Volumes)
	}
	s.bind(ctx, qp, assumed, res.Node, res.Volumes)
}

// handleFailure requeues a pod that could not be placed and tells its
// owner why: a FailedScheduling event and the PodScheduled=False
// condition, with upstream's message. When no node fits it tries to
// preempt lower-priority pods.
func (s *Scheduler) handleFailure(ctx context.Context, qp *queue.QueuedPod, err error) {
	pod := qp.Info.Pod
	reason := v1.PodReasonUnschedulable
	var nomination nominationChange
	var fitErr *placement.FitError
	switch {
	case errors.Is(err, placement.ErrNoNodes):
		nomination = clearNomination
		s.queue.AddUnschedulable(qp, 0)
	case errors.As(err, &fitErr):
		nomination = s.tryPreemption(ctx, qp.Info, fitErr)
		s.queue.AddUnschedulable(qp, fitErr.Diagnosis.Rejectors)
	default:
		reason = v1.PodReasonSchedulerError
		nomination = clearNomination
		s.queue.AddBackoff(qp)
	}
	if nomination == clearNomination {
		s.nominator.remove(pod.UID)
	}
	msg := err.Error()
	if reason == v1.PodReasonSchedulerError {
		s.log.Error("scheduling attempt failed; retrying with backoff", "pod", qp.Info.Key(), "err", err)
	} else {
		s.log.Debug("pod does not fit; waiting", "pod", qp.Info.Key(), "reason", msg)
	}
	s.recordFailure(ctx, pod, reason, msg, nomination)
}

// nominationChange says what a failure does to the pod's nominated node.
type nominationChange struct {
	mode nominationMode
	node string
}

type nominationMode uint8

const (
	nominationKeep nominationMode = iota
	nominationSet
)

var (
	keepNomination  = nominationChange{mode: nominationKeep}
	clearNomination = nominationChange{mode: nominationSet}
)

// tryPreemption runs preemption for a pod no node fits. On success the pod
// is nominated to the chosen node and the victims are deleted in the
// background; the pod is retried once they are gone.
func (s *Scheduler) tryPreemption(ctx context.Context, pi *cluster.PodInfo, fitErr *placement.FitError) nominationChange {
	if !s.cfg.engine.Preemption {
		return clearNomination
	}
	out, err := s.engine.Preempt(ctx, s.cache, s.nominator, pi, fitErr)
	if err != nil {
		s.log.Error("preemption failed", "pod", pi.Key(), "err", err)
		return keepNomination
	}
	p := out.Preemption
	if p == nil {
		if out.ClearNomination {
			s.nominator.remove(pi.Pod.UID)
			return clearNomination
		}
		return keepNomination
	}
	s.log.Info("preempting pods to make room", "pod", pi.Key(), "node", p.Node, "victims", len(p.Victims))
	lower := s.nominator.lowerPriority(p.Node, pi.Priority)
	for _, l := range lower {
		s.nominator.remove(l.Pod.UID)
		s.queue.Activate(l.Pod.UID)
	}
	s.nominator.add(pi, p.Node)
	s.executePreemption(ctx, pi.Pod, p, lower)
	return nominationChange{mode: nominationSet, node: p.Node}
}

// onBindResult finishes a binding: on failure the assumed pod is forgotten,
// which frees its room for pods waiting on it, and the pod is retried with
// backoff unless it was deleted or bound meanwhile.
func (s *Scheduler) onBindResult(ctx context.Context, r bindResult) {
	s.assumed.release(r.qp.Info.Pod.UID)
	if r.err == nil {
		return
	}
	pod := r.qp.Info.Pod
	s.cache.ForgetPod(pod.UID)
	s.queue.Move(podRemovedFilters, nil)
	cur, err := s.pods.Pods(pod.Namespace).Get(pod.Name)
	if err != nil || cur.UID != pod.UID || cur.Spec.NodeName != "" {
		s.log.Info("binding failed for a pod that is gone or bound meanwhile", "pod", r.qp.Info.Key(), "node", r.node, "err", r.err)
		return
	}
	s.handleFailure(ctx, r.qp, r.err)
}

// responsible reports whether this scheduler places the pod.
func (s *Scheduler) responsible(pod *v1.Pod) bool {
	return pod.Spec.SchedulerName == s.cfg.schedulerName
}

// podKey is namespace/name for logs.
func podKey(p *v1.Pod) string { return p.Namespace + "/" + p.Name }

// nominator records the pods nominated to nodes by preemption and not
// bound yet. The loop writes it; filters read it during a cycle.
type nominator struct {
	byNode map[string][]*cluster.PodInfo
	nodeOf map[types.UID]string
}

func newNominator() *nominator {
	return &nominator{byNode: map[string][]*cluster.PodInfo{}, nodeOf: map[types.UID]string{}}
}

// NominatedPods implements placement.Nominator.
func (n *nominator) NominatedPods(node string) []*cluster.PodInfo { return n.byNode[node] }

func (n *nominator) add(pi *cluster.PodInfo, node string) {
	n.remove(pi.Pod.UID)
	n.byNode[node] = append(n.byNode[node], pi)
	n.nodeOf[pi.Pod.UID] = node
}

func (n *nominator) remove(uid types.UID) {
	node, ok := n.nodeOf[uid]
	if !ok {
		return
	}
	delete(n.nodeOf, uid)
	pods := n.byNode[node]
	for i, p := range pods {
		if p.Pod.UID == uid {
			pods = append(pods[:i], pods[i+1:]...)
			break
		}
	}
	if len(pods) == 0 {
		delete(n.byNode, node)
	} else {
		n.byNode[node] = pods
	}
}

// lowerPriority lists the pods nominated to node with a priority below p.
func (n *nominator) lowerPriority(node string, p int32) []*cluster.PodInfo {
	var out []*cluster.PodInfo
	for _, pi := range n.byNode[node] {
		if pi.Priority < p {
			out = append(out, pi)
		}
	}
	return out
}
