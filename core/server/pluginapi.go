package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	rbacvalidation "k8s.io/component-helpers/auth/rbac/validation"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/core/pki"
	"github.com/keelson/keelson/internal/gatewaycrds"
	"github.com/keelson/keelson/plugins/host"
)

// The Plugin resource: one cluster-scoped object per configured plugin,
// written by the leader's plugin host, so `kubectl get plugins` on any
// server shows every plugin's state.
var pluginGVR = schema.GroupVersionResource{Group: "keelson.io", Version: "v1alpha1", Resource: "plugins"}

// pluginLabel marks the RBAC objects the host manages for a plugin.
const pluginLabel = "keelson.io/plugin"

// pluginRoleName names a plugin's ClusterRole and ClusterRoleBinding.
func pluginRoleName(name string) string { return "keelson:plugin:" + name }

func pluginCRD() *apiextensionsv1.CustomResourceDefinition {
	str := func(desc string) apiextensionsv1.JSONSchemaProps {
		return apiextensionsv1.JSONSchemaProps{Type: "string", Description: desc}
	}
	num := func(desc string) apiextensionsv1.JSONSchemaProps {
		return apiextensionsv1.JSONSchemaProps{Type: "integer", Format: "int64", Description: desc}
	}
	col := func(name, typ, path string, priority int32) apiextensionsv1.CustomResourceColumnDefinition {
		return apiextensionsv1.CustomResourceColumnDefinition{Name: name, Type: typ, JSONPath: path, Priority: priority}
	}
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: pluginGVR.Resource + "." + pluginGVR.Group},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: pluginGVR.Group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{
				Plural: "plugins", Singular: "plugin", Kind: "Plugin", ListKind: "PluginList", Categories: []string{"keelson"},
			},
			Scope: apiextensionsv1.ClusterScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: pluginGVR.Version, Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type:        "object",
					Description: "A plugin run by the raft leader's plugin host, or a node plugin's state on one node (PLUGIN.NODE); written by keelson, read-only for users.",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"apiVersion": {Type: "string"},
						"kind":       {Type: "string"},
						"metadata":   {Type: "object"},
						"spec": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
							"builtin": {Type: "boolean", Description: "compiled into keelson"},
							"scope":   str("node for a node plugin's state on one node; empty for the leader's plugins"),
							"path":    str("the executable"),
							"sha256":  str("the checksum a third-party executable must match"),
						}},
						"status": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
							"state":     str("starting, running, crash-looping, refused, disabled, stopped or waiting (for its executable)"),
							"ready":     {Type: "boolean", Description: "the plugin's latest health report"},
							"message":   str("the plugin's latest health message"),
							"lastError": str("why the plugin last failed or was refused"),
							"restarts":  num("restarts since the leader started it"),
							"backoff":   str("wait before the pending restart"),
							"kind":      str("controller, scheduler, cloud-provider or ingress"),
							"version":   str("the plugin's own version"),
							"server":    str("the server (raft leader) running it"),
							"node":      str("the node running it (node plugins)"),
							"pid":       num("process id on that server"),
							"term":      num("raft term it was started in"),
							"since":     {Type: "string", Format: "date-time", Description: "when state last changed"},
						}},
					},
				}},
				AdditionalPrinterColumns: []apiextensionsv1.CustomResourceColumnDefinition{
					col("Kind", "string", ".status.kind", 0),
					col("State", "string", ".status.state", 0),
					col("Ready", "boolean", ".status.ready", 0),
					col("Restarts", "integer", ".status.restarts", 0),
					col("Server", "string", ".status.server", 0),
					col("Node", "string", ".status.node", 0),
					col("Term", "integer", ".status.term", 0),
					col("Age", "date", ".metadata.creationTimestamp", 0),
					col("Version", "string", ".status.version", 1),
					col("PID", "integer", ".status.pid", 1),
					col("Last-Error", "string", ".status.lastError", 1),
				},
			}},
		},
	}
}

// ensurePluginCRD creates or updates the Plugin CRD and waits until it is
// served.
func ensurePluginCRD(ctx context.Context, c apiextensions.Interface) error {
	return ensureCRD(ctx, c, pluginCRD())
}

// ensureGatewayCRDs installs the Gateway API standard channel, which the
// built-in ingress plugin (and any other Gateway controller) serves.
func ensureGatewayCRDs(ctx context.Context, c apiextensions.Interface) error {
	crds, err := gatewaycrds.CRDs()
	if err != nil {
		return err
	}
	for _, crd := range crds {
		if err := ensureCRD(ctx, c, crd); err != nil {
			return err
		}
	}
	return nil
}

// ensureCRD creates or updates want and waits until it is served.
func ensureCRD(ctx context.Context, c apiextensions.Interface, want *apiextensionsv1.CustomResourceDefinition) error {
	crds := c.ApiextensionsV1().CustomResourceDefinitions()
	got, err := crds.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if got, err = crds.Create(ctx, want, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating CRD %s: %w", want.Name, err)
		}
	case err != nil:
		return fmt.Errorf("reading CRD %s: %w", want.Name, err)
	case !equality.Semantic.DeepEqual(got.Spec.Versions, want.Spec.Versions) || !equality.Semantic.DeepEqual(got.Spec.Names, want.Spec.Names):
		got.Spec = want.Spec
		if got, err = crds.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("updating CRD %s: %w", want.Name, err)
		}
	}
	for {
		if got != nil {
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for CRD %s to be established: %w", want.Name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if got, err = crds.Get(ctx, want.Name, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("reading CRD %s: %w", want.Name, err)
		}
	}
}

// grantRules gives plugin name exactly rules: its own ClusterRole, bound to
// its user. It returns once the API server's authorizer allows the first
// rule, so the plugin does not start into a wall of 403s.
func grantRules(ctx context.Context, c kubernetes.Interface, name string, rules []rbacv1.PolicyRule) error {
	meta := metav1.ObjectMeta{Name: pluginRoleName(name), Labels: map[string]string{pluginLabel: name}}
	subject := rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: pki.PluginUser(name)}
	if err := ensureClusterRole(ctx, c, meta, rules, subject); err != nil {
		return err
	}
	return waitAllowed(ctx, c, name, rules)
}

// ensureClusterRole makes a ClusterRole with exactly rules and a
// ClusterRoleBinding of the same name to subject.
func ensureClusterRole(ctx context.Context, c kubernetes.Interface, meta metav1.ObjectMeta, rules []rbacv1.PolicyRule, subject rbacv1.Subject) error {
	role := &rbacv1.ClusterRole{ObjectMeta: meta, Rules: rules}
	roles := c.RbacV1().ClusterRoles()
	got, err := roles.Get(ctx, role.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = roles.Create(ctx, role, metav1.CreateOptions{})
	case err == nil && !equality.Semantic.DeepEqual(got.Rules, rules):
		got.Rules = rules
		_, err = roles.Update(ctx, got, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("ClusterRole %s: %w", role.Name, err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: meta,
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{subject},
	}
	bindings := c.RbacV1().ClusterRoleBindings()
	if _, err := bindings.Get(ctx, binding.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		if _, err := bindings.Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("ClusterRoleBinding %s: %w", binding.Name, err)
		}
	} else if err != nil {
		return fmt.Errorf("ClusterRoleBinding %s: %w", binding.Name, err)
	}
	return nil
}

// waitAllowed polls a SubjectAccessReview for the plugin's first rule until
// the RBAC authorizer's caches have caught up with the grant.
func waitAllowed(ctx context.Context, c kubernetes.Interface, name string, rules []rbacv1.PolicyRule) error {
	if len(rules) == 0 || len(rules[0].Verbs) == 0 {
		return nil
	}
	r := rules[0]
	attrs := &authorizationv1.ResourceAttributes{Verb: r.Verbs[0]}
	switch {
	case len(r.Resources) > 0:
		attrs.Resource = r.Resources[0]
		if len(r.APIGroups) > 0 {
			attrs.Group = r.APIGroups[0]
		}
	case len(r.NonResourceURLs) > 0:
		return nil
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: pki.PluginUser(name), Groups: []string{pki.PluginsGroup}, ResourceAttributes: attrs,
	}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := c.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err == nil && res.Status.Allowed {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("%s", res.Status.Reason)
			}
			return fmt.Errorf("RBAC does not yet allow %s %s for %s: %w", attrs.Verb, attrs.Resource, pki.PluginUser(name), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pruneUnconfigured deletes the Plugin objects and RBAC of plugins that are
// no longer configured, so `kubectl get plugins` never shows a ghost and a
// removed plugin keeps no permissions.
func pruneUnconfigured(ctx context.Context, c kubernetes.Interface, dyn dynamic.Interface, configured, nodePlugins []string) error {
	var errs []error
	list, err := dyn.Resource(pluginGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing plugins: %w", err)
	}
	for _, obj := range list.Items {
		if p, ok := obj.GetLabels()[nodePluginLabel]; ok && slices.Contains(nodePlugins, p) {
			continue // a declared node plugin's state on one node
		}
		if !slices.Contains(configured, obj.GetName()) {
			if err := dyn.Resource(pluginGVR).Delete(ctx, obj.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	sel := metav1.ListOptions{LabelSelector: pluginLabel}
	roles, err := c.RbacV1().ClusterRoles().List(ctx, sel)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("listing plugin roles: %w", err))...)
	}
	for _, r := range roles.Items {
		if name := r.Labels[pluginLabel]; !slices.Contains(configured, name) {
			del := metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}
			for _, err := range []error{
				c.RbacV1().ClusterRoleBindings().Delete(ctx, r.Name, del),
				c.RbacV1().ClusterRoles().Delete(ctx, r.Name, del),
			} {
				if err != nil && !apierrors.IsNotFound(err) {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// statusWriter publishes plugin states as Plugin objects. Changes are
// coalesced per plugin (only the newest is written) and written from one
// goroutine, so a crash-looping plugin cannot flood the store.
type statusWriter struct {
	dyn    dynamic.Interface
	server string
	specs  map[string]host.Spec
	log    *slog.Logger

	mu      sync.Mutex
	pending map[string]host.PluginStatus
	kick    chan struct{}
}

// setSpec records what the Plugin object of an installed plugin shows as
// its spec.
func (w *statusWriter) setSpec(sp host.Spec) {
	w.mu.Lock()
	w.specs[sp.Name] = sp
	w.mu.Unlock()
}

func newStatusWriter(dyn dynamic.Interface, server string, specs []host.Spec, log *slog.Logger) *statusWriter {
	w := &statusWriter{dyn: dyn, server: server, specs: map[string]host.Spec{}, log: log,
		pending: map[string]host.PluginStatus{}, kick: make(chan struct{}, 1)}
	for _, sp := range specs {
		w.specs[sp.Name] = sp
	}
	return w
}

// set queues st to be written.
func (w *statusWriter) set(st host.PluginStatus) {
	w.mu.Lock()
	w.pending[st.Name] = st
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// run writes queued states until ctx ends; a failed write is retried after
// a pause unless a newer state replaced it meanwhile.
func (w *statusWriter) run(ctx context.Context) {
	wake := (<-chan time.Time)(nil) // set while failed writes wait for a retry
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-wake:
		}
		wake = nil
		w.mu.Lock()
		batch := w.pending
		w.pending = map[string]host.PluginStatus{}
		w.mu.Unlock()
		for name, st := range batch {
			err := w.write(ctx, st)
			if err == nil {
				continue
			}
			if ctx.Err() != nil {
				return
			}
			w.log.Warn("writing plugin status", "plugin", name, "err", err)
			w.mu.Lock()
			if _, newer := w.pending[name]; !newer {
				w.pending[name] = st
			}
			w.mu.Unlock()
			wake = time.After(time.Second)
		}
	}
}

// write stores st, unless the object already shows a newer term: a deposed
// leader's late report must not overwrite the new leader's.
func (w *statusWriter) write(ctx context.Context, st host.PluginStatus) error {
	res := w.dyn.Resource(pluginGVR)
	obj, err := res.Get(ctx, st.Name, metav1.GetOptions{})
	create := apierrors.IsNotFound(err)
	switch {
	case create:
		obj = &unstructured.Unstructured{}
		obj.SetAPIVersion(pluginGVR.GroupVersion().String())
		obj.SetKind("Plugin")
		obj.SetName(st.Name)
	case err != nil:
		return err
	default:
		if term, _, _ := unstructured.NestedInt64(obj.Object, "status", "term"); uint64(term) > st.Term {
			return nil
		}
	}
	w.mu.Lock()
	sp := w.specs[st.Name]
	w.mu.Unlock()
	spec := map[string]any{"builtin": sp.Builtin, "path": sp.Path}
	if sp.SHA256 != "" {
		spec["sha256"] = sp.SHA256
	}
	status := map[string]any{
		"state": string(st.State), "ready": st.Ready, "restarts": int64(st.Restarts),
		"kind": string(st.Kind), "version": st.Version, "server": w.server,
		"pid": int64(st.PID), "term": int64(st.Term), "since": st.Since.UTC().Format(time.RFC3339),
	}
	for k, v := range map[string]string{"message": st.Message, "lastError": st.LastError} {
		if v != "" {
			status[k] = v
		}
	}
	if st.Backoff > 0 {
		status["backoff"] = st.Backoff.String()
	}
	obj.Object["spec"], obj.Object["status"] = spec, status
	if create {
		_, err = res.Create(ctx, obj, metav1.CreateOptions{})
	} else {
		_, err = res.Update(ctx, obj, metav1.UpdateOptions{}) // resourceVersion from the read: a race is a conflict
	}
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("plugin %s changed while writing its status (term %s); retrying: %w", st.Name, strconv.FormatUint(st.Term, 10), err)
	}
	return err
}

// withinApproval checks a third-party plugin's declared rules against the
// rules its operator approved, with the RBAC escalation check's comparison
// (a declared rule must be covered verb by verb, resource by resource).
// approver names where the approval comes from: approvedByConfig or
// approvedByInstall.
func withinApproval(name, approver string, approved, declared []rbacv1.PolicyRule) error {
	ok, uncovered := rbacvalidation.Covers(approved, declared)
	if ok {
		return nil
	}
	var beyond []string
	for _, r := range uncovered {
		beyond = append(beyond, ruleString(r))
	}
	return fmt.Errorf("plugin %s declares API permissions beyond what %s approves for it: %s; "+
		"approve them in its rules (or a preset) if you trust it with them", name, approver, strings.Join(beyond, ", "))
}

// Where a third-party plugin's approval comes from, for withinApproval.
const (
	approvedByConfig  = "plugins.external"
	approvedByInstall = "its PluginInstall (keelson plugin install --rules/--preset)"
)

// ruleString renders a rule as kubectl describe clusterrole lists it:
// resources (with group) or URLs, resource names, verbs.
func ruleString(r rbacv1.PolicyRule) string {
	var what []string
	for _, res := range r.Resources {
		for _, g := range r.APIGroups {
			if g != "" {
				res += "." + g
			}
			what = append(what, res)
		}
	}
	what = append(what, r.NonResourceURLs...)
	s := strings.Join(what, ",")
	if len(r.ResourceNames) > 0 {
		s += " [" + strings.Join(r.ResourceNames, ",") + "]"
	}
	return s + " verbs=[" + strings.Join(r.Verbs, ",") + "]"
}
