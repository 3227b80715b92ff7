package persistentvolume

import (
	"cmp"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/component-helpers/storage/volume"
)

// byAccessModes indexes volumes by their set of access modes, so that a
// claim is matched first against the volumes whose modes are the smallest
// superset of what it asks for (a claim for ReadWriteOnce gets a
// ReadWriteOnce volume before a ReadWriteOnce+ReadWriteMany one), as
// upstream's volume index does.
const byAccessModes = "accessModes"

// modeOrder is the canonical order of access modes in an index key.
var modeOrder = []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce, v1.ReadOnlyMany, v1.ReadWriteMany, v1.ReadWriteOncePod}

// accessModesKey is the index key of a set of access modes.
func accessModesKey(modes []v1.PersistentVolumeAccessMode) string {
	have := sets.New(modes...)
	var parts []string
	for _, m := range modeOrder {
		if have.Has(m) {
			parts = append(parts, string(m))
		}
	}
	return strings.Join(parts, ",")
}

func indexAccessModes(obj any) ([]string, error) {
	pv, ok := obj.(*v1.PersistentVolume)
	if !ok {
		return nil, nil
	}
	return []string{accessModesKey(pv.Spec.AccessModes)}, nil
}

// modeSetsFor lists the index keys whose modes include every mode the claim
// asks for, fewest modes first.
func modeSetsFor(keys []string, requested []v1.PersistentVolumeAccessMode) []string {
	var out []string
	for _, k := range keys {
		have := sets.New(strings.Split(k, ",")...)
		ok := true
		for _, m := range requested {
			if !have.Has(string(m)) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		return cmp.Or(cmp.Compare(strings.Count(a, ","), strings.Count(b, ",")), strings.Compare(a, b))
	})
	return out
}

// findBestMatch returns the volume a claim should be bound to: one
// pre-bound to it, else the smallest available one that satisfies it (none
// for a claim that waits for its first consumer: the scheduler picks its
// volume with the node).
func (c *controller) findBestMatch(claim *v1.PersistentVolumeClaim, delayBinding bool) (*v1.PersistentVolume, error) {
	for _, key := range modeSetsFor(c.volumes.ListIndexFuncValues(byAccessModes), claim.Spec.AccessModes) {
		objs, err := c.volumes.ByIndex(byAccessModes, key)
		if err != nil {
			return nil, err
		}
		pvs := make([]*v1.PersistentVolume, 0, len(objs))
		for _, o := range objs {
			if pv, ok := o.(*v1.PersistentVolume); ok {
				pvs = append(pvs, c.fresherVolume(pv))
			}
		}
		// A stable order, so that equal candidates are chosen the same way
		// on every sync.
		slices.SortFunc(pvs, func(a, b *v1.PersistentVolume) int { return strings.Compare(a.Name, b.Name) })
		pv, err := volume.FindMatchingVolume(claim, pvs, nil, nil, delayBinding, true)
		if err != nil || pv != nil {
			return pv, err
		}
	}
	return nil, nil
}
