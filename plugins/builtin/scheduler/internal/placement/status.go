package placement

import (
	"math/bits"
	"strings"
)

// Code says whether a pod fits a node, and if not whether removing pods
// (preemption) could change that.
type Code uint8

const (
	// Success: the pod fits.
	Success Code = iota
	// Unschedulable: the pod does not fit, but might once lower-priority
	// pods are removed from the node.
	Unschedulable
	// UnschedulableAndUnresolvable: the pod does not fit, and removing
	// pods would not help (labels, taints, capacity the node lacks).
	UnschedulableAndUnresolvable
)

// Status is a filter's verdict for one node.
type Status struct {
	Code    Code
	Filter  FilterID
	Reasons []string
}

// OK reports whether the status is Success.
func (s Status) OK() bool { return s.Code == Success }

func reject(f FilterID, reasons ...string) Status {
	return Status{Code: Unschedulable, Filter: f, Reasons: reasons}
}

func rejectHard(f FilterID, reasons ...string) Status {
	return Status{Code: UnschedulableAndUnresolvable, Filter: f, Reasons: reasons}
}

// Message joins the reasons.
func (s Status) Message() string { return strings.Join(s.Reasons, ", ") }

// FilterID names a filter; the order of the constants is the order in which
// filters run, which is upstream's, so the reason a node is reported with
// (the first filter that rejects it) is the one upstream reports.
type FilterID uint8

// The filters, in the order they run.
const (
	FilterNodeName FilterID = iota
	FilterNodeUnschedulable
	FilterTaintToleration
	FilterNodeAffinity
	FilterNodePorts
	FilterNodeResourcesFit
	FilterVolumeBinding
	FilterVolumeZone
	FilterPodTopologySpread
	FilterInterPodAffinity
	numFilters
)

// filterNames are upstream's plugin names, which appear in messages such as
// "node(s) didn't satisfy plugin NodeAffinity".
var filterNames = [numFilters]string{
	FilterNodeName:          "NodeName",
	FilterNodeUnschedulable: "NodeUnschedulable",
	FilterTaintToleration:   "TaintToleration",
	FilterNodeAffinity:      "NodeAffinity",
	FilterNodePorts:         "NodePorts",
	FilterNodeResourcesFit:  "NodeResourcesFit",
	FilterVolumeBinding:     "VolumeBinding",
	FilterVolumeZone:        "VolumeZone",
	FilterPodTopologySpread: "PodTopologySpread",
	FilterInterPodAffinity:  "InterPodAffinity",
}

func (f FilterID) String() string {
	if f < numFilters {
		return filterNames[f]
	}
	return "Unknown"
}

// FilterSet is a set of filters, e.g. those that rejected a pod: the queue
// uses it to move the pod only on events that can change their verdict.
type FilterSet uint32

// Has reports whether f is in the set.
func (s FilterSet) Has(f FilterID) bool { return s&(1<<f) != 0 }

// With returns the set plus f.
func (s FilterSet) With(f FilterID) FilterSet { return s | 1<<f }

// Names lists the set's filter names in run order.
func (s FilterSet) Names() []string {
	var names []string
	for s != 0 {
		f := FilterID(bits.TrailingZeros32(uint32(s)))
		names = append(names, f.String())
		s &^= 1 << f
	}
	return names
}

// The reasons upstream reports, word for word: users and tools match on
// them.
const (
	reasonNodeName             = "node(s) didn't match the requested node name"
	reasonUnschedulable        = "node(s) were unschedulable"
	reasonUntoleratedTaint     = "node(s) had untolerated taint(s)"
	reasonNodeAffinity         = "node(s) didn't match Pod's node affinity/selector"
	reasonAffinityConflict     = "pod affinity terms conflict"
	reasonNodePorts            = "node(s) didn't have free ports for the requested pod ports"
	reasonTooManyPods          = "Too many pods"
	reasonPVNodeAffinity       = "node(s) didn't match PersistentVolume's node affinity"
	reasonPVNotExist           = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
	reasonUnboundImmediate     = "pod has unbound immediate PersistentVolumeClaims"
	reasonVolumeZone           = "node(s) had no available volume zone"
	reasonSpreadNotMatch       = "node(s) didn't match pod topology spread constraints"
	reasonSpreadMissingLabel   = reasonSpreadNotMatch + " (missing required label)"
	reasonAffinityNotMatch     = "node(s) didn't match pod affinity rules"
	reasonAntiAffinityNotMatch = "node(s) didn't match pod anti-affinity rules"
	reasonExistingAntiAffinity = "node(s) didn't satisfy existing pods anti-affinity rules"
	reasonNoVictims            = "No preemption victims found for incoming pod"
	reasonPreemptionNotHelpful = "Preemption is not helpful for scheduling"

	// NoNodesAvailable is the error when the cluster has no node at all.
	NoNodesAvailable = "no nodes available to schedule pods"
)
