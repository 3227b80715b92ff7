// Package ownership decides which objects a controller owns, with the
// ControllerRef rules every Kubernetes controller follows: an object has at
// most one controller owner; a controller adopts orphans its selector
// matches (never while it is being deleted, and only after a fresh read
// confirms it still exists) and releases the objects it controls whose
// labels stopped matching. Adoption and release are strategic-merge patches
// of the dependent's ownerReferences, guarded by the dependent's UID.
package ownership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// Patcher applies a strategic-merge patch to the dependent namespace/name.
type Patcher func(ctx context.Context, namespace, name string, patch []byte) error

// Claimer claims dependents for one controller object during one sync.
type Claimer struct {
	owner     metav1.Object
	ownerKind schema.GroupVersionKind
	patch     Patcher

	canAdopt     func(ctx context.Context) error
	canAdoptOnce sync.Once
	canAdoptErr  error
}

// NewClaimer returns a Claimer for owner (of kind ownerKind). canAdopt is
// called at most once, before the first adoption: it should re-read the
// owner from the API server (see Recheck), since the cached copy may not yet
// show that it is being deleted.
func NewClaimer(owner metav1.Object, ownerKind schema.GroupVersionKind, canAdopt func(ctx context.Context) error, patch Patcher) *Claimer {
	return &Claimer{owner: owner, ownerKind: ownerKind, canAdopt: canAdopt, patch: patch}
}

// Claim returns the objects of objs the owner controls after this call:
// those it already controls and that match, plus the matching orphans it
// adopted. Controlled objects that no longer match are released. Errors of
// individual objects are joined; the objects that did succeed are still
// returned.
func Claim[T metav1.Object](ctx context.Context, c *Claimer, objs []T, match func(T) bool) ([]T, error) {
	var claimed []T
	var errs []error
	for _, obj := range objs {
		ok, err := c.claim(ctx, obj, match(obj))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			claimed = append(claimed, obj)
		}
	}
	return claimed, errors.Join(errs...)
}

func (c *Claimer) claim(ctx context.Context, obj metav1.Object, matches bool) (bool, error) {
	if ref := metav1.GetControllerOfNoCopy(obj); ref != nil {
		if ref.UID != c.owner.GetUID() {
			return false, nil // someone else's
		}
		if matches {
			return true, nil
		}
		// A controller being deleted keeps what it has: the garbage
		// collector decides what happens to its dependents.
		if c.owner.GetDeletionTimestamp() != nil {
			return false, nil
		}
		if err := c.release(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
			return false, err
		}
		return false, nil
	}
	if c.owner.GetDeletionTimestamp() != nil || !matches || obj.GetDeletionTimestamp() != nil {
		return false, nil
	}
	if ns := c.owner.GetNamespace(); ns != "" && ns != obj.GetNamespace() {
		return false, nil
	}
	if err := c.adopt(ctx, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

func (c *Claimer) adopt(ctx context.Context, obj metav1.Object) error {
	c.canAdoptOnce.Do(func() {
		if c.canAdopt != nil {
			c.canAdoptErr = c.canAdopt(ctx)
		}
	})
	if c.canAdoptErr != nil {
		return fmt.Errorf("cannot adopt %s/%s (%s): %w", obj.GetNamespace(), obj.GetName(), obj.GetUID(), c.canAdoptErr)
	}
	p, err := AdoptPatch(c.owner, c.ownerKind, obj.GetUID())
	if err != nil {
		return err
	}
	if err := c.patch(ctx, obj.GetNamespace(), obj.GetName(), p); err != nil {
		return fmt.Errorf("adopting %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

func (c *Claimer) release(ctx context.Context, obj metav1.Object) error {
	p, err := ReleasePatch(obj.GetUID(), c.owner.GetUID())
	if err != nil {
		return err
	}
	err = c.patch(ctx, obj.GetNamespace(), obj.GetName(), p)
	// Invalid means the UID precondition failed: the object was replaced
	// by another of the same name, which this owner never controlled.
	if err == nil || apierrors.IsNotFound(err) || apierrors.IsInvalid(err) {
		return nil
	}
	return fmt.Errorf("releasing %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
}

// Recheck returns a canAdopt func that reads the owner afresh with get and
// refuses adoption if it was replaced (another UID) or is being deleted.
func Recheck(uid types.UID, get func(ctx context.Context) (metav1.Object, error)) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		fresh, err := get(ctx)
		if err != nil {
			return fmt.Errorf("re-reading the owner: %w", err)
		}
		if fresh.GetUID() != uid {
			return fmt.Errorf("owner %s/%s was replaced: uid %s, wanted %s", fresh.GetNamespace(), fresh.GetName(), fresh.GetUID(), uid)
		}
		if ts := fresh.GetDeletionTimestamp(); ts != nil {
			return fmt.Errorf("owner %s/%s is being deleted (since %s)", fresh.GetNamespace(), fresh.GetName(), ts.UTC().Format("2006-01-02T15:04:05Z"))
		}
		return nil
	}
}

type adoptPatch struct {
	Metadata struct {
		OwnerReferences []metav1.OwnerReference `json:"ownerReferences"`
		UID             types.UID               `json:"uid"`
	} `json:"metadata"`
}

// AdoptPatch is the strategic-merge patch that adds owner's controller
// reference to the dependent with UID dependent (ownerReferences merge by
// uid; the dependent's uid makes the patch fail if it was replaced).
func AdoptPatch(owner metav1.Object, kind schema.GroupVersionKind, dependent types.UID) ([]byte, error) {
	var p adoptPatch
	p.Metadata.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(owner, kind)}
	p.Metadata.UID = dependent
	return json.Marshal(p)
}

type releasePatch struct {
	Metadata struct {
		OwnerReferences []map[string]string `json:"ownerReferences"`
		UID             types.UID           `json:"uid"`
	} `json:"metadata"`
}

// ReleasePatch is the strategic-merge patch that removes the reference to
// owner from the dependent with UID dependent.
func ReleasePatch(dependent, owner types.UID) ([]byte, error) {
	var p releasePatch
	p.Metadata.OwnerReferences = []map[string]string{{"$patch": "delete", "uid": string(owner)}}
	p.Metadata.UID = dependent
	return json.Marshal(p)
}
