package garbagecollector

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/utils/ptr"
)

// The API calls of the collector. Every write is conditional on the UID
// and resourceVersion of what the decision was based on: a JSON merge
// patch (the one patch type custom resources accept) replaces the whole
// list it sets, so it must not land on a version the collector has not
// seen.

func (gc *collector) api(r *resource, ns string) metadata.ResourceInterface {
	if r.namespaced {
		return gc.client.Resource(r.gvr).Namespace(ns)
	}
	return gc.client.Resource(r.gvr)
}

func (gc *collector) getLive(ctx context.Context, r *resource, ns, name string) (*metav1.PartialObjectMetadata, error) {
	return gc.api(r, ns).Get(ctx, name, metav1.GetOptions{})
}

// deleteLive deletes it (as read live) with policy. If it changed since
// but its owners did not, the delete is retried without the version
// precondition, so frequent unrelated updates cannot starve collection.
func (gc *collector) deleteLive(ctx context.Context, it item, policy metav1.DeletionPropagation) error {
	api := gc.api(it.res, it.obj.Namespace)
	uid, rv := it.obj.UID, it.obj.ResourceVersion
	err := api.Delete(ctx, it.obj.Name, metav1.DeleteOptions{
		Preconditions:     &metav1.Preconditions{UID: &uid, ResourceVersion: &rv},
		PropagationPolicy: &policy,
	})
	if apierrors.IsConflict(err) {
		live, gerr := api.Get(ctx, it.obj.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(gerr) {
			return nil
		}
		if gerr == nil && live.UID == uid && equality.Semantic.DeepEqual(live.OwnerReferences, it.obj.OwnerReferences) {
			err = api.Delete(ctx, it.obj.Name, metav1.DeleteOptions{
				Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &policy,
			})
		}
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting %s: %w", describe(it), err)
	}
	return nil
}

// metaPatch is a JSON merge patch of an object's metadata with the UID
// and resourceVersion it must still have.
type metaPatch struct {
	Metadata struct {
		UID             types.UID                `json:"uid"`
		ResourceVersion string                   `json:"resourceVersion"`
		OwnerReferences *[]metav1.OwnerReference `json:"ownerReferences,omitempty"`
		Finalizers      *[]string                `json:"finalizers,omitempty"`
	} `json:"metadata"`
}

// patchLive reads it live and, if edit changes its metadata, writes the
// change conditionally.
func (gc *collector) patchLive(ctx context.Context, it item, edit func(*metav1.PartialObjectMetadata, *metaPatch) bool) error {
	api := gc.api(it.res, it.obj.Namespace)
	live, err := api.Get(ctx, it.obj.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if live.UID != it.obj.UID {
		return apierrors.NewNotFound(it.res.gvr.GroupResource(), it.obj.Name)
	}
	var p metaPatch
	p.Metadata.UID, p.Metadata.ResourceVersion = live.UID, live.ResourceVersion
	if !edit(live, &p) {
		return nil
	}
	body, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encoding patch: %w", err)
	}
	_, err = api.Patch(ctx, it.obj.Name, types.MergePatchType, body, metav1.PatchOptions{})
	return err
}

// removeOwnerRefs drops it's references to the given owners.
func (gc *collector) removeOwnerRefs(ctx context.Context, it item, owners []types.UID) error {
	err := gc.patchLive(ctx, it, func(live *metav1.PartialObjectMetadata, p *metaPatch) bool {
		refs := slices.DeleteFunc(slices.Clone(live.OwnerReferences), func(r metav1.OwnerReference) bool {
			return slices.Contains(owners, r.UID)
		})
		if len(refs) == len(live.OwnerReferences) {
			return false
		}
		if refs == nil {
			refs = []metav1.OwnerReference{}
		}
		p.Metadata.OwnerReferences = &refs
		return true
	})
	if err != nil {
		return fmt.Errorf("removing owner references from %s: %w", describe(it), err)
	}
	return nil
}

// unblockOwnerRefs clears blockOwnerDeletion on all of it's references.
func (gc *collector) unblockOwnerRefs(ctx context.Context, it item) error {
	err := gc.patchLive(ctx, it, func(live *metav1.PartialObjectMetadata, p *metaPatch) bool {
		refs := slices.Clone(live.OwnerReferences)
		changed := false
		for i := range refs {
			if refs[i].BlockOwnerDeletion != nil && *refs[i].BlockOwnerDeletion {
				refs[i].BlockOwnerDeletion = ptr.To(false)
				changed = true
			}
		}
		p.Metadata.OwnerReferences = &refs
		return changed
	})
	if err != nil {
		return fmt.Errorf("unblocking owner references of %s: %w", describe(it), err)
	}
	return nil
}

// removeFinalizer drops finalizer f from it.
func (gc *collector) removeFinalizer(ctx context.Context, it item, f string) error {
	err := gc.patchLive(ctx, it, func(live *metav1.PartialObjectMetadata, p *metaPatch) bool {
		if !slices.Contains(live.Finalizers, f) {
			return false
		}
		rest := slices.DeleteFunc(slices.Clone(live.Finalizers), func(x string) bool { return x == f })
		if rest == nil {
			rest = []string{}
		}
		p.Metadata.Finalizers = &rest
		return true
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing finalizer %s from %s: %w", f, describe(it), err)
	}
	return nil
}
