// Package nodehealth gives plugins (node lifecycle controllers, built-in or
// third-party) the node-health vocabulary the servers and agents use: the
// liveness annotation that says who owns a node's Ready condition, and the
// conditions a node gets when it stops reporting. It re-exports
// internal/nodehealth, which the servers and agents share, so a plugin and
// the control plane can never disagree on a reason or an annotation.
package nodehealth

import (
	"github.com/keelson/keelson/internal/nodehealth"
)

// Where a Node's liveness comes from; see internal/nodehealth.
const (
	LivenessAnnotation = nodehealth.LivenessAnnotation
	LivenessGossip     = nodehealth.LivenessGossip
)

// Reasons and messages of the conditions written for a node that stopped
// reporting (upstream's node lifecycle controller's).
const (
	ReasonUnknown       = nodehealth.ReasonUnknown
	MessageUnknown      = nodehealth.MessageUnknown
	ReasonNeverUpdated  = nodehealth.ReasonNeverUpdated
	MessageNeverUpdated = nodehealth.MessageNeverUpdated
)

// AgentConditions are the conditions only the node's agent can measure.
var AgentConditions = nodehealth.AgentConditions

// Helpers over a Node's conditions; see internal/nodehealth for each.
var (
	IsGossip            = nodehealth.IsGossip
	MarkUnknown         = nodehealth.MarkUnknown
	AllUnknown          = nodehealth.AllUnknown
	UnknownByController = nodehealth.UnknownByController
	Condition           = nodehealth.Condition
)
