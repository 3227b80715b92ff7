package deployment

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/dump"
)

// Annotations the controller keeps on Deployments and their ReplicaSets;
// kubectl rollout reads them.
const (
	revisionAnnotation        = "deployment.kubernetes.io/revision"
	revisionHistoryAnnotation = "deployment.kubernetes.io/revision-history"
	desiredReplicasAnnotation = "deployment.kubernetes.io/desired-replicas"
	maxReplicasAnnotation     = "deployment.kubernetes.io/max-replicas"
	// maxRevisionHistoryChars bounds revision-history, a list that grows
	// each time an old template is rolled back to.
	maxRevisionHistoryChars = 2000
)

// notCopied are the Deployment annotations that stay off its ReplicaSets
// (and are kept when a rollback copies a ReplicaSet's annotations back).
var notCopied = map[string]bool{
	v1.LastAppliedConfigAnnotation: true,
	revisionAnnotation:             true,
	revisionHistoryAnnotation:      true,
	desiredReplicasAnnotation:      true,
	maxReplicasAnnotation:          true,
	appsv1.DeprecatedRollbackTo:    true,
}

// revision parses a ReplicaSet's revision annotation (0 when absent).
func revision(rs *appsv1.ReplicaSet) (int64, error) {
	v, ok := rs.Annotations[revisionAnnotation]
	if !ok {
		return 0, nil
	}
	return strconv.ParseInt(v, 10, 64)
}

// maxRevision is the highest revision among rss; unparseable ones are
// skipped.
func maxRevision(log *slog.Logger, rss []*appsv1.ReplicaSet) int64 {
	var m int64
	for _, rs := range rss {
		v, err := revision(rs)
		if err != nil {
			log.Debug("skipping a ReplicaSet with an unparseable revision", "replicaSet", rs.Name, "error", err)
			continue
		}
		m = max(m, v)
	}
	return m
}

// lastRevision is the second highest revision: the one before the current.
func lastRevision(log *slog.Logger, rss []*appsv1.ReplicaSet) int64 {
	var top, second int64
	for _, rs := range rss {
		v, err := revision(rs)
		if err != nil {
			log.Debug("skipping a ReplicaSet with an unparseable revision", "replicaSet", rs.Name, "error", err)
			continue
		}
		if v >= top {
			top, second = v, top
		} else if v > second {
			second = v
		}
	}
	return second
}

// byRevision orders ReplicaSets oldest revision first (creation time when
// revisions tie or do not parse).
func byRevision(rss []*appsv1.ReplicaSet) {
	sort.SliceStable(rss, func(i, j int) bool {
		ri, err1 := revision(rss[i])
		rj, err2 := revision(rss[j])
		if err1 != nil || err2 != nil || ri == rj {
			return createdBefore(rss[i], rss[j])
		}
		return ri < rj
	})
}

// setDeploymentRevision records revision on d; it reports a change.
func setDeploymentRevision(d *appsv1.Deployment, revision string) bool {
	if d.Annotations == nil {
		d.Annotations = map[string]string{}
	}
	if d.Annotations[revisionAnnotation] == revision {
		return false
	}
	d.Annotations[revisionAnnotation] = revision
	return true
}

// setNewReplicaSetAnnotations copies d's annotations (change-cause and the
// like) onto its new ReplicaSet rs, raises rs's revision to newRevision
// (remembering the one it had in revision-history, which is how a rolled
// back-to ReplicaSet keeps its past) and, for a ReplicaSet being created,
// records the replica annotations. It reports a change.
func setNewReplicaSetAnnotations(log *slog.Logger, d *appsv1.Deployment, rs *appsv1.ReplicaSet, newRevision string, exists bool) bool {
	changed := copyAnnotations(d, rs)
	oldRevision, had := rs.Annotations[revisionAnnotation]
	oldN, err := strconv.ParseInt(oldRevision, 10, 64)
	if err != nil {
		if oldRevision != "" {
			log.Info("not updating the revision of a ReplicaSet whose revision does not parse", "replicaSet", rs.Name, "revision", oldRevision)
			return false
		}
		oldN = 0
	}
	newN, err := strconv.ParseInt(newRevision, 10, 64)
	if err != nil {
		log.Info("not updating a ReplicaSet to an unparseable revision", "replicaSet", rs.Name, "revision", newRevision)
		return false
	}
	if oldN < newN {
		rs.Annotations[revisionAnnotation] = newRevision
		changed = true
		if had {
			appendRevisionHistory(log, rs, oldRevision)
		}
	}
	if !exists && setReplicasAnnotations(rs, desired(d), desired(d)+maxSurge(d)) {
		changed = true
	}
	return changed
}

// appendRevisionHistory adds old to rs's revision-history, dropping the
// oldest entries to stay within maxRevisionHistoryChars.
func appendRevisionHistory(log *slog.Logger, rs *appsv1.ReplicaSet, old string) {
	hist := rs.Annotations[revisionHistoryAnnotation]
	if hist == "" {
		rs.Annotations[revisionHistoryAnnotation] = old
		return
	}
	entries := strings.Split(hist, ",")
	total := len(hist) + len(old) + 1
	start := 0
	for total > maxRevisionHistoryChars && start < len(entries) {
		total -= len(entries[start]) + 1
		start++
	}
	if total > maxRevisionHistoryChars {
		log.Info("revision history of a ReplicaSet is full; not recording", "replicaSet", rs.Name, "revision", old)
		return
	}
	rs.Annotations[revisionHistoryAnnotation] = strings.Join(append(entries[start:], old), ",")
}

func copyAnnotations(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	if rs.Annotations == nil {
		rs.Annotations = map[string]string{}
	}
	changed := false
	for k, v := range d.Annotations {
		if cur, ok := rs.Annotations[k]; notCopied[k] || (ok && cur == v) {
			continue
		}
		rs.Annotations[k] = v
		changed = true
	}
	return changed
}

// setReplicasAnnotations records on rs the Deployment size (desired) and
// its ceiling during a rolling update (max) it was sized for; proportional
// scaling reads them back. It reports a change.
func setReplicasAnnotations(rs *appsv1.ReplicaSet, desiredN, maxN int32) bool {
	if rs.Annotations == nil {
		rs.Annotations = map[string]string{}
	}
	changed := false
	for k, v := range map[string]string{desiredReplicasAnnotation: strconv.Itoa(int(desiredN)), maxReplicasAnnotation: strconv.Itoa(int(maxN))} {
		if rs.Annotations[k] != v {
			rs.Annotations[k] = v
			changed = true
		}
	}
	return changed
}

func replicasAnnotationsStale(rs *appsv1.ReplicaSet, desiredN, maxN int32) bool {
	return rs.Annotations[desiredReplicasAnnotation] != strconv.Itoa(int(desiredN)) ||
		rs.Annotations[maxReplicasAnnotation] != strconv.Itoa(int(maxN))
}

// int32Annotation reads a non-negative int32 annotation of rs.
func int32Annotation(rs *appsv1.ReplicaSet, key string) (int32, bool) {
	s, ok := rs.Annotations[key]
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v > 1<<31-1 {
		return 0, false
	}
	return int32(v), true
}

// equalIgnoreHash compares pod templates, ignoring the pod-template-hash
// label the controller adds to a ReplicaSet's template.
func equalIgnoreHash(a, b *v1.PodTemplateSpec) bool {
	ac, bc := a.DeepCopy(), b.DeepCopy()
	delete(ac.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	delete(bc.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	return equality.Semantic.DeepEqual(ac, bc)
}

// templateHash names a pod template, as upstream does (so a template gets
// the same ReplicaSet name under either controller): FNV-32a of its deep
// printout and the collision count, spelt with safe characters.
func templateHash(t *v1.PodTemplateSpec, collisionCount *int32) string {
	h := fnv.New32a()
	fmt.Fprintf(h, "%v", dump.ForHash(*t))
	if collisionCount != nil {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint32(b, uint32(*collisionCount))
		h.Write(b)
	}
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// replicaSetName is "<deployment>-<hash>", the deployment name cut so the
// whole stays a valid name.
func replicaSetName(deployment, hash string) string {
	limit := validation.DNS1123SubdomainMaxLength - 1 - len(hash)
	if len(deployment) > limit && limit > 0 {
		deployment = deployment[:limit]
	}
	return deployment + "-" + hash
}
