package sdk

import (
	"context"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// StripManagedFields is an informer transform that drops metadata.managedFields,
// which no controller reads and which is often the largest part of an object.
// Use it (or a transform that calls it) on every informer a plugin starts.
func StripManagedFields(obj any) (any, error) {
	if _, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return obj, nil
	}
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// IgnoreAPIWarnings makes p's API client drop the warnings the API server
// sends (which client-go otherwise prints on stderr for every request),
// for a plugin that uses a deprecated API on purpose: the endpoints
// controllers keep v1 Endpoints, deprecated since 1.33, up to date for the
// clients that still read them, and the garbage collector and namespace
// controller handle every resource the API serves, deprecated ones too.
func IgnoreAPIWarnings(p Plugin) Plugin {
	run := p.Run
	p.Run = func(ctx context.Context, env Env) error {
		env.RESTConfig = rest.CopyConfig(env.RESTConfig)
		env.RESTConfig.WarningHandler = rest.NoWarnings{}
		return run(ctx, env)
	}
	return p
}
