package runtime

import (
	"context"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/typeurl/v2"
)

// Event is a change of a container's main process that containerd reports.
type Event struct {
	ContainerID string
	// OOM is set for an OOM kill, which precedes the exit.
	OOM bool
}

// Watch calls fn for every exit of a container's main process and every OOM
// kill, until ctx ends. It resubscribes when the stream breaks (containerd
// restarted); the caller re-reads the world after such a gap anyway, since
// events can be lost in it.
func (r *Runtime) Watch(ctx context.Context, fn func(Event)) {
	ctx = r.ns(ctx)
	for ctx.Err() == nil {
		events, errs := r.client.Subscribe(ctx,
			`namespace==`+Namespace+`,topic=="/tasks/exit"`,
			`namespace==`+Namespace+`,topic=="/tasks/oom"`)
	loop:
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				if ctx.Err() == nil {
					r.log.Warn("containerd event stream broke; resubscribing", "err", err)
				}
				break loop
			case e := <-events:
				if e == nil || e.Event == nil {
					continue
				}
				v, err := typeurl.UnmarshalAny(e.Event)
				if err != nil {
					continue
				}
				switch ev := v.(type) {
				case *apievents.TaskExit:
					if ev.ID == ev.ContainerID { // not an exec'd process
						fn(Event{ContainerID: ev.ContainerID})
					}
				case *apievents.TaskOOM:
					if err := r.MarkOOMKilled(ctx, ev.ContainerID); err != nil && !IsNotFound(err) {
						r.log.Warn("recording an OOM kill", "container", ev.ContainerID, "err", err)
					}
					fn(Event{ContainerID: ev.ContainerID, OOM: true})
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
