package deployment

import (
	"context"
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Rollback event reasons. `kubectl rollout undo` rolls back by itself (it
// copies the old ReplicaSet's template into the Deployment); this path
// serves clients of the deprecated rollbackTo, which extensions/v1beta1
// carried as an annotation.
const (
	reasonRollbackNotFound  = "DeploymentRollbackRevisionNotFound"
	reasonRollbackUnchanged = "DeploymentRollbackTemplateUnchanged"
	reasonRollbackDone      = "DeploymentRollback"
)

func rollbackTo(d *appsv1.Deployment) *int64 {
	s := d.Annotations[appsv1.DeprecatedRollbackTo]
	if s == "" {
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return nil
	}
	return &n
}

// rollback copies the template of the requested revision (0: the previous
// one) into d and clears the request.
func (c *Controller) rollback(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, oldRSs, err := c.replicaSetsAndRevision(ctx, d, rsList, true)
	if err != nil {
		return err
	}
	allRSs := append(oldRSs, newRS)
	to := *rollbackTo(d)
	if to == 0 {
		if to = lastRevision(c.logger, allRSs); to == 0 {
			c.events.Eventf(d, v1.EventTypeWarning, reasonRollbackNotFound, "Unable to find last revision.")
			return c.clearRollbackTo(ctx, d)
		}
	}
	for _, rs := range allRSs {
		if rs == nil {
			continue
		}
		if v, err := revision(rs); err != nil || v != to {
			continue
		}
		if equalIgnoreHash(&d.Spec.Template, &rs.Spec.Template) {
			c.events.Eventf(d, v1.EventTypeWarning, reasonRollbackUnchanged, "The rollback revision contains the same template as current deployment %q", d.Name)
			return c.clearRollbackTo(ctx, d)
		}
		d.Spec.Template.ObjectMeta = rs.Spec.Template.ObjectMeta
		d.Spec.Template.Spec = rs.Spec.Template.Spec
		d.Spec.Template.Labels = withoutLabel(rs.Spec.Template.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
		annotationsFrom(d, rs)
		if err := c.clearRollbackTo(ctx, d); err != nil {
			return err
		}
		c.events.Eventf(d, v1.EventTypeNormal, reasonRollbackDone, "Rolled back deployment %q to revision %d", d.Name, to)
		return nil
	}
	c.events.Eventf(d, v1.EventTypeWarning, reasonRollbackNotFound, "Unable to find the revision to rollback to.")
	return c.clearRollbackTo(ctx, d)
}

// annotationsFrom replaces d's annotations by rs's, keeping d's own
// bookkeeping ones.
func annotationsFrom(d *appsv1.Deployment, rs *appsv1.ReplicaSet) {
	kept := map[string]string{}
	for k, v := range d.Annotations {
		if notCopied[k] {
			kept[k] = v
		}
	}
	for k, v := range rs.Annotations {
		if !notCopied[k] {
			kept[k] = v
		}
	}
	d.Annotations = kept
}

func withoutLabel(m map[string]string, key string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if k != key {
			out[k] = v
		}
	}
	return out
}

func (c *Controller) clearRollbackTo(ctx context.Context, d *appsv1.Deployment) error {
	delete(d.Annotations, appsv1.DeprecatedRollbackTo)
	if _, err := c.client.AppsV1().Deployments(d.Namespace).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("clearing the rollback request of %s: %w", keyOf(d), err)
	}
	return nil
}
