package cronjob

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	batchv1 "k8s.io/api/batch/v1"
)

// nextScheduleDelta pads every wake-up so that a clock a little behind the
// schedule's still lands after the scheduled time.
const nextScheduleDelta = 100 * time.Millisecond

// maxMissed is how many missed times are worth listing; beyond it the
// controller reports the clock skew or stale deadline instead.
const maxMissed = 100

// scheduleSpec is the schedule robfig/cron parses: spec.schedule, prefixed
// with spec.timeZone as TZ=. A schedule that names TZ itself is left as it
// is (the API server refuses such new CronJobs; older ones keep working).
func scheduleSpec(cj *batchv1.CronJob) string {
	if strings.Contains(cj.Spec.Schedule, "TZ") || cj.Spec.TimeZone == nil {
		return cj.Spec.Schedule
	}
	return fmt.Sprintf("TZ=%s %s", *cj.Spec.TimeZone, cj.Spec.Schedule)
}

// parseSchedule parses s, turning the parser's panics on odd input into
// errors.
func parseSchedule(s string) (sched cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parsing schedule %q: %v", s, r)
		}
	}()
	return cron.ParseStandard(s)
}

// mostRecent returns the latest schedule time in (earliest, now], whether
// more than maxMissed were missed, and the earliest time considered. The
// earliest is the last schedule time (or creation), moved up to now minus
// startingDeadlineSeconds when withDeadline: nothing older may start.
func mostRecent(cj *batchv1.CronJob, now time.Time, sched cron.Schedule, withDeadline bool) (earliest time.Time, recent *time.Time, tooMany bool, err error) {
	earliest = cj.CreationTimestamp.Time
	if cj.Status.LastScheduleTime != nil {
		earliest = cj.Status.LastScheduleTime.Time
	}
	if withDeadline && cj.Spec.StartingDeadlineSeconds != nil {
		if d := now.Add(-time.Duration(*cj.Spec.StartingDeadlineSeconds) * time.Second); d.After(earliest) {
			earliest = d
		}
	}
	t1 := sched.Next(earliest)
	if t1.IsZero() || now.Before(t1) {
		return earliest, nil, false, nil
	}
	t2 := sched.Next(t1)
	if now.Before(t2) {
		return earliest, &t1, false, nil
	}
	period := int64(t2.Sub(t1).Round(time.Second).Seconds())
	if period < 1 {
		return earliest, nil, false, fmt.Errorf("time difference between two schedules is less than 1 second")
	}
	missed := int64(now.Sub(t1).Seconds())/period + 1
	// Jump close to now by whole periods, then let the schedule walk the
	// rest (irregular schedules like "30 6-16/4 * * 1-5" need the walk).
	start := t1.Add(time.Duration((missed-2)*period) * time.Second)
	var last time.Time
	for t := sched.Next(start); !t.IsZero() && !t.After(now); t = sched.Next(t) {
		last = t
	}
	if last.IsZero() {
		return earliest, nil, missed > maxMissed, nil
	}
	return earliest, &last, missed > maxMissed, nil
}

// untilNext is how long after now the CronJob next needs a look: just
// past its next schedule time.
func untilNext(cj *batchv1.CronJob, now time.Time, sched cron.Schedule) time.Duration {
	earliest, recent, tooMany, err := mostRecent(cj, now, sched, false)
	from := earliest
	switch {
	case err != nil || (recent == nil && tooMany):
		from = now
	case recent != nil:
		from = *recent
	}
	next := sched.Next(from)
	if next.IsZero() {
		return 0 // never again
	}
	return next.Add(nextScheduleDelta).Sub(now)
}

// jobName is <cronjob>-<scheduled time in minutes since the epoch>: a
// deterministic name makes a second creation for the same time fail.
func jobName(cj *batchv1.CronJob, scheduled time.Time) string {
	return fmt.Sprintf("%s-%d", cj.Name, scheduled.Unix()/60)
}
