package nodelifecycle

import (
	corev1 "k8s.io/api/core/v1"
)

// zoneState is how disrupted a zone is, upstream's names.
type zoneState string

const (
	stateInitial           zoneState = "Initial"
	stateNormal            zoneState = "Normal"
	statePartialDisruption zoneState = "PartialDisruption"
	stateFullDisruption    zoneState = "FullDisruption"
)

// labelExcludeDisruption keeps a node out of its zone's disruption count.
const labelExcludeDisruption = "node.kubernetes.io/exclude-disruption"

// computeZoneState counts a zone's not-ready nodes (Ready missing, False or
// Unknown) and says how disrupted the zone is: fully when no node is
// ready; partially when more than two nodes, and at least threshold of
// them, are not ready; normal otherwise.
func computeZoneState(ready []*corev1.NodeCondition, threshold float64) (notReady int, state zoneState) {
	readyNodes := 0
	for _, c := range ready {
		if c != nil && c.Status == corev1.ConditionTrue {
			readyNodes++
		} else {
			notReady++
		}
	}
	switch {
	case readyNodes == 0 && notReady > 0:
		return notReady, stateFullDisruption
	case notReady > 2 && float64(notReady)/float64(notReady+readyNodes) >= threshold:
		return notReady, statePartialDisruption
	default:
		return notReady, stateNormal
	}
}

// rateFor is the eviction rate (nodes per second) of a zone of size nodes
// in state: the normal rate when healthy, and also when the zone is fully
// disrupted (a dead zone is evacuated at the normal pace, unless every zone
// is dead: see disruption); in a partially disrupted zone the secondary
// rate for a large zone, none for a small one.
func (c Config) rateFor(state zoneState, size int) float64 {
	switch state {
	case statePartialDisruption:
		if size > c.LargeClusterSizeThreshold {
			return c.SecondaryNodeEvictionRate
		}
		return 0
	default:
		return c.NodeEvictionRate
	}
}

// disruption tracks the zones' states across monitor passes.
type disruption struct {
	cfg    Config
	states map[string]zoneState
}

// disruptionChange is what one monitor pass must do about the zones.
type disruptionChange struct {
	// rates are the zones whose eviction rate changes, and to what.
	rates map[string]float64
	// enteredFull: every zone just became fully disrupted. Likely the
	// control plane is cut off rather than every node dead: stop evicting
	// and take the NoExecute taints off every node.
	enteredFull bool
	// exitedFull: some node is ready again after a full disruption: the
	// nodes' health clocks restart, so none is condemned for the outage.
	exitedFull bool
}

// update takes the Ready conditions of each zone's nodes (nodes excluded
// from disruption checks left out) and returns what changed, following
// upstream's handleDisruption.
func (d *disruption) update(zones map[string][]*corev1.NodeCondition) disruptionChange {
	newStates := map[string]zoneState{}
	allAreFull := true
	for zone, conds := range zones {
		_, st := computeZoneState(conds, d.cfg.UnhealthyZoneThreshold)
		newStates[zone] = st
		if st != stateFullDisruption {
			allAreFull = false
		}
		if _, known := d.states[zone]; !known {
			d.states[zone] = stateInitial
		}
	}
	allWereFull := true
	for zone, st := range d.states {
		if _, present := zones[zone]; !present {
			delete(d.states, zone)
			continue
		}
		if st != stateFullDisruption {
			allWereFull = false
		}
	}
	change := disruptionChange{rates: map[string]float64{}}
	switch {
	case allAreFull && allWereFull:
		// Still fully disrupted everywhere (or no zones): nothing moves.
	case allAreFull:
		change.enteredFull = true
		for zone := range d.states {
			change.rates[zone] = 0
			d.states[zone] = stateFullDisruption
		}
	case allWereFull:
		change.exitedFull = true
		for zone := range d.states {
			change.rates[zone] = d.cfg.rateFor(newStates[zone], len(zones[zone]))
			d.states[zone] = newStates[zone]
		}
	default:
		for zone, st := range d.states {
			if st == newStates[zone] {
				continue
			}
			change.rates[zone] = d.cfg.rateFor(newStates[zone], len(zones[zone]))
			d.states[zone] = newStates[zone]
		}
	}
	return change
}

// allFull reports whether every zone is fully disrupted (false with no
// zones).
func (d *disruption) allFull() bool {
	for _, st := range d.states {
		if st != stateFullDisruption {
			return false
		}
	}
	return len(d.states) > 0
}
