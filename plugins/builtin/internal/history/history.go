// Package history keeps the ControllerRevisions of a StatefulSet or a
// DaemonSet, as kube-controller-manager does: each distinct pod template
// is stored once as a revision named <owner>-<hash>, where the hash covers
// the stored template and the owner's collisionCount (bumped when another
// object already holds the name); the revision number of the template in
// use is the highest; revisions no pod uses are deleted beyond
// revisionHistoryLimit. The stored data is the strategic-merge patch
// `{"spec":{"template":{...,"$patch":"replace"}}}` that kubectl rollout
// undo applies and kubectl rollout history shows.
package history

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
)

// HashLabel is the label a revision (and the pods made from it) carries.
const HashLabel = appsv1.ControllerRevisionHashLabelKey

// maxCollisions bounds the retries of Sync when names keep colliding.
const maxCollisions = 100

// Patch returns the revision data for template: the patch that sets an
// owner's spec.template to exactly template.
func Patch(template *v1.PodTemplateSpec) (runtime.RawExtension, error) {
	raw, err := json.Marshal(template)
	if err != nil {
		return runtime.RawExtension{}, fmt.Errorf("encoding the pod template: %w", err)
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return runtime.RawExtension{}, fmt.Errorf("decoding the pod template: %w", err)
	}
	obj["$patch"] = "replace"
	data, err := json.Marshal(map[string]any{"spec": map[string]any{"template": obj}})
	if err != nil {
		return runtime.RawExtension{}, fmt.Errorf("encoding the revision patch: %w", err)
	}
	return runtime.RawExtension{Raw: data}, nil
}

// Template decodes the pod template a revision stores.
func Template(rev *appsv1.ControllerRevision) (*v1.PodTemplateSpec, error) {
	var p struct {
		Spec struct {
			Template v1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	raw := rev.Data.Raw
	if len(raw) == 0 && rev.Data.Object != nil {
		var err error
		if raw, err = json.Marshal(rev.Data.Object); err != nil {
			return nil, fmt.Errorf("encoding revision %s: %w", rev.Name, err)
		}
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("decoding revision %s: %w", rev.Name, err)
	}
	return &p.Spec.Template, nil
}

// Hash hashes data with collisionCount into a short DNS-label-safe string.
func Hash(data []byte, collisionCount *int32) string {
	h := fnv.New32a()
	h.Write(data)
	if collisionCount != nil {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], uint32(*collisionCount))
		h.Write(b[:])
	}
	return rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// Name is the revision name for owner and hash, cut so it stays a valid
// object name.
func Name(owner, hash string) string {
	const max = 253 - 1 - 10 // room for the dash and the longest hash
	if len(owner) > max {
		owner = owner[:max]
	}
	return owner + "-" + hash
}

// Owner is what Sync needs to know of the StatefulSet or DaemonSet.
type Owner struct {
	Object metav1.Object
	Kind   schema.GroupVersionKind
	// Labels go on new revisions (the template's labels, as upstream).
	Labels map[string]string
	// Data is the revision content (see Patch).
	Data runtime.RawExtension
	// CollisionCount is the owner's status.collisionCount; Sync may raise
	// it and the caller writes it back to status.
	CollisionCount int32
}

// Sort orders revs by revision number, then by creation, then by name.
func Sort(revs []*appsv1.ControllerRevision) {
	sort.SliceStable(revs, func(i, j int) bool {
		a, b := revs[i], revs[j]
		if a.Revision != b.Revision {
			return a.Revision < b.Revision
		}
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
}

// Equal reports whether two revisions store the same template.
func Equal(a, b *appsv1.ControllerRevision) bool {
	return bytes.Equal(a.Data.Raw, b.Data.Raw)
}

// Sync returns the revision of o's current template among revs (the
// owner's revisions, sorted), creating it or renumbering an older equal one
// to be the newest, and o's possibly raised collision count.
func Sync(ctx context.Context, client kubernetes.Interface, o Owner, revs []*appsv1.ControllerRevision) (*appsv1.ControllerRevision, int32, error) {
	next := int64(1)
	if n := len(revs); n > 0 {
		next = revs[n-1].Revision + 1
	}
	var equal []*appsv1.ControllerRevision
	for _, r := range revs {
		if bytes.Equal(r.Data.Raw, o.Data.Raw) {
			equal = append(equal, r)
		}
	}
	if n := len(equal); n > 0 {
		cur := equal[n-1]
		if cur.Revision == next-1 {
			return cur, o.CollisionCount, nil
		}
		// A rollback to an older template: that revision becomes the newest.
		upd := cur.DeepCopy()
		upd.Revision = next
		got, err := client.AppsV1().ControllerRevisions(upd.Namespace).Update(ctx, upd, metav1.UpdateOptions{})
		if err != nil {
			return nil, o.CollisionCount, fmt.Errorf("renumbering revision %s/%s to %d: %w", upd.Namespace, upd.Name, next, err)
		}
		return got, o.CollisionCount, nil
	}
	return create(ctx, client, o, next)
}

func create(ctx context.Context, client kubernetes.Interface, o Owner, revision int64) (*appsv1.ControllerRevision, int32, error) {
	cc := o.CollisionCount
	ns := o.Object.GetNamespace()
	for range maxCollisions {
		hash := Hash(o.Data.Raw, &cc)
		rev := &appsv1.ControllerRevision{
			ObjectMeta: metav1.ObjectMeta{
				Name:            Name(o.Object.GetName(), hash),
				Namespace:       ns,
				Labels:          map[string]string{HashLabel: hash},
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(o.Object, o.Kind)},
			},
			Data:     o.Data,
			Revision: revision,
		}
		for k, v := range o.Labels {
			rev.Labels[k] = v
		}
		rev.Labels[HashLabel] = hash
		got, err := client.AppsV1().ControllerRevisions(ns).Create(ctx, rev, metav1.CreateOptions{})
		if err == nil {
			return got, cc, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, cc, fmt.Errorf("creating revision %s/%s: %w", ns, rev.Name, err)
		}
		existing, gerr := client.AppsV1().ControllerRevisions(ns).Get(ctx, rev.Name, metav1.GetOptions{})
		if gerr != nil {
			return nil, cc, fmt.Errorf("reading revision %s/%s after a name collision: %w", ns, rev.Name, gerr)
		}
		if metav1.IsControlledBy(existing, o.Object) && bytes.Equal(existing.Data.Raw, rev.Data.Raw) {
			return existing, cc, nil // our own earlier write, not yet in the cache
		}
		cc++ // a true collision: another hash, and status records why
	}
	return nil, cc, fmt.Errorf("revision of %s/%s: %d name collisions in a row", ns, o.Object.GetName(), maxCollisions)
}

// Truncate deletes the oldest revisions of revs (sorted) that no pod uses
// (live holds the names of those in use, and the current one) until at most
// limit unused ones remain.
func Truncate(ctx context.Context, client kubernetes.Interface, revs []*appsv1.ControllerRevision, live map[string]bool, limit int32) error {
	var unused []*appsv1.ControllerRevision
	for _, r := range revs {
		if !live[r.Name] {
			unused = append(unused, r)
		}
	}
	extra := len(unused) - int(max(limit, 0))
	for i := 0; i < extra; i++ {
		r := unused[i]
		err := client.AppsV1().ControllerRevisions(r.Namespace).Delete(ctx, r.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting revision %s/%s: %w", r.Namespace, r.Name, err)
		}
	}
	return nil
}
