package dns

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// Catalog is what the DNS server reads: Services and EndpointSlices, looked
// up by name and by address. Implementations must be safe for concurrent
// use; the objects returned are shared and must not be modified.
type Catalog interface {
	// Service returns a service, nil if there is none.
	Service(namespace, name string) *v1.Service
	// HasServices reports whether a namespace has any service.
	HasServices(namespace string) bool
	// EndpointSlices returns the slices of a service.
	EndpointSlices(namespace, service string) []*discovery.EndpointSlice
	// ServicesByIP returns the services with ip among their cluster IPs.
	ServicesByIP(ip string) []*v1.Service
	// EndpointSlicesByIP returns the slices with an endpoint at ip.
	EndpointSlicesByIP(ip string) []*discovery.EndpointSlice
}

const (
	indexClusterIP = "keelson-dns-cluster-ip"
	indexService   = "keelson-dns-service"
	indexAddress   = "keelson-dns-address"
)

// informerCatalog answers from informer caches.
type informerCatalog struct {
	services, slices cache.Indexer
}

// NewInformerCatalog returns a Catalog over a Service and an EndpointSlice
// informer, adding the indexes it needs. Call it before the informers
// start; the informers may be shared with other components.
func NewInformerCatalog(services, slices cache.SharedIndexInformer) (Catalog, error) {
	err := services.AddIndexers(cache.Indexers{
		indexClusterIP: func(obj any) ([]string, error) {
			s, ok := obj.(*v1.Service)
			if !ok {
				return nil, nil
			}
			ips := s.Spec.ClusterIPs
			if len(ips) == 0 && s.Spec.ClusterIP != "" {
				ips = []string{s.Spec.ClusterIP}
			}
			var out []string
			for _, ip := range ips {
				if ip != v1.ClusterIPNone {
					out = append(out, canonicalIP(ip))
				}
			}
			return out, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("dns: indexing services: %w", err)
	}
	err = slices.AddIndexers(cache.Indexers{
		indexService: func(obj any) ([]string, error) {
			s, ok := obj.(*discovery.EndpointSlice)
			if !ok || s.Labels[discovery.LabelServiceName] == "" {
				return nil, nil
			}
			return []string{s.Namespace + "/" + s.Labels[discovery.LabelServiceName]}, nil
		},
		indexAddress: func(obj any) ([]string, error) {
			s, ok := obj.(*discovery.EndpointSlice)
			if !ok {
				return nil, nil
			}
			var out []string
			for _, e := range s.Endpoints {
				for _, a := range e.Addresses {
					out = append(out, canonicalIP(a))
				}
			}
			return out, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("dns: indexing endpointslices: %w", err)
	}
	return &informerCatalog{services: services.GetIndexer(), slices: slices.GetIndexer()}, nil
}

func (c *informerCatalog) Service(namespace, name string) *v1.Service {
	obj, ok, err := c.services.GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil
	}
	s, _ := obj.(*v1.Service)
	return s
}

func (c *informerCatalog) HasServices(namespace string) bool {
	keys, err := c.services.IndexKeys(cache.NamespaceIndex, namespace)
	return err == nil && len(keys) > 0
}

func (c *informerCatalog) EndpointSlices(namespace, service string) []*discovery.EndpointSlice {
	return byIndex[*discovery.EndpointSlice](c.slices, indexService, namespace+"/"+service)
}

func (c *informerCatalog) ServicesByIP(ip string) []*v1.Service {
	return byIndex[*v1.Service](c.services, indexClusterIP, canonicalIP(ip))
}

func (c *informerCatalog) EndpointSlicesByIP(ip string) []*discovery.EndpointSlice {
	return byIndex[*discovery.EndpointSlice](c.slices, indexAddress, canonicalIP(ip))
}

func byIndex[T any](idx cache.Indexer, name, key string) []T {
	objs, err := idx.ByIndex(name, key)
	if err != nil {
		return nil
	}
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}
