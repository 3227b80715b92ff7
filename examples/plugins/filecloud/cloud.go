package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"

	v1 "k8s.io/api/core/v1"
	cloudprovider "k8s.io/cloud-provider"
)

// description is the file's content.
type description struct {
	Instances     []instance     `json:"instances"`
	LoadBalancers []loadBalancer `json:"loadBalancers"`
}

// instance is one machine; Node is the Node it registers as.
type instance struct {
	Node      string           `json:"node"`
	ID        string           `json:"id"`
	Type      string           `json:"type"`
	Zone      string           `json:"zone"`
	Region    string           `json:"region"`
	Addresses []v1.NodeAddress `json:"addresses"`
	Shutdown  bool             `json:"shutdown"`
}

// loadBalancer is the address the cloud gives a Service ("namespace/name").
type loadBalancer struct {
	Service string `json:"service"`
	IP      string `json:"ip"`
}

// Cloud implements cloudprovider.Interface over the file: instances
// (InstancesV2) and load balancers; no routes, zones come with instances.
type Cloud struct{ path string }

var _ cloudprovider.Interface = (*Cloud)(nil)

func (c *Cloud) read() (*description, error) {
	b, err := os.ReadFile(c.path)
	if err != nil {
		return nil, err
	}
	var d description
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", c.path, err)
	}
	for i, in := range d.Instances {
		if in.Node == "" || in.ID == "" {
			return nil, fmt.Errorf("%s: instances[%d]: node and id are required", c.path, i)
		}
	}
	for i, lb := range d.LoadBalancers {
		if _, err := netip.ParseAddr(lb.IP); err != nil || !strings.Contains(lb.Service, "/") {
			return nil, fmt.Errorf("%s: loadBalancers[%d]: want a service \"namespace/name\" and an ip", c.path, i)
		}
	}
	return &d, nil
}

func (c *Cloud) Initialize(cloudprovider.ControllerClientBuilder, <-chan struct{}) {}
func (c *Cloud) LoadBalancer() (cloudprovider.LoadBalancer, bool)                  { return c, true }
func (c *Cloud) Instances() (cloudprovider.Instances, bool)                        { return nil, false }
func (c *Cloud) InstancesV2() (cloudprovider.InstancesV2, bool)                    { return c, true }
func (c *Cloud) Zones() (cloudprovider.Zones, bool)                                { return nil, false }
func (c *Cloud) Clusters() (cloudprovider.Clusters, bool)                          { return nil, false }
func (c *Cloud) Routes() (cloudprovider.Routes, bool)                              { return nil, false }
func (c *Cloud) ProviderName() string                                              { return "filecloud" }
func (c *Cloud) HasClusterID() bool                                                { return true }

// find is the node's instance: by provider ID, else by node name.
func (c *Cloud) find(n *v1.Node) (*instance, error) {
	d, err := c.read()
	if err != nil {
		return nil, err
	}
	for i, in := range d.Instances {
		if n.Spec.ProviderID == providerPrefix+in.ID || (n.Spec.ProviderID == "" && in.Node == n.Name) {
			return &d.Instances[i], nil
		}
	}
	return nil, nil
}

func (c *Cloud) InstanceExists(_ context.Context, n *v1.Node) (bool, error) {
	in, err := c.find(n)
	return in != nil, err
}

func (c *Cloud) InstanceShutdown(_ context.Context, n *v1.Node) (bool, error) {
	in, err := c.find(n)
	return in != nil && in.Shutdown, err
}

func (c *Cloud) InstanceMetadata(_ context.Context, n *v1.Node) (*cloudprovider.InstanceMetadata, error) {
	in, err := c.find(n)
	if err != nil {
		return nil, err
	}
	if in == nil {
		return nil, cloudprovider.InstanceNotFound
	}
	return &cloudprovider.InstanceMetadata{ProviderID: providerPrefix + in.ID, InstanceType: in.Type,
		NodeAddresses: in.Addresses, Zone: in.Zone, Region: in.Region}, nil
}

// lookup is the Service's load balancer in the file, if any.
func (c *Cloud) lookup(svc *v1.Service) (*v1.LoadBalancerStatus, error) {
	d, err := c.read()
	if err != nil {
		return nil, err
	}
	key := svc.Namespace + "/" + svc.Name
	for _, lb := range d.LoadBalancers {
		if lb.Service == key {
			vip := v1.LoadBalancerIPModeVIP
			return &v1.LoadBalancerStatus{Ingress: []v1.LoadBalancerIngress{{IP: lb.IP, IPMode: &vip}}}, nil
		}
	}
	return nil, nil
}

func (c *Cloud) GetLoadBalancer(_ context.Context, _ string, svc *v1.Service) (*v1.LoadBalancerStatus, bool, error) {
	st, err := c.lookup(svc)
	return st, st != nil, err
}

func (c *Cloud) GetLoadBalancerName(_ context.Context, _ string, svc *v1.Service) string {
	return cloudprovider.DefaultLoadBalancerName(svc)
}

func (c *Cloud) EnsureLoadBalancer(_ context.Context, _ string, svc *v1.Service, _ []*v1.Node) (*v1.LoadBalancerStatus, error) {
	st, err := c.lookup(svc)
	if err == nil && st == nil {
		err = fmt.Errorf("%s describes no load balancer for service %s/%s", c.path, svc.Namespace, svc.Name)
	}
	return st, err
}

// UpdateLoadBalancer: the file's load balancers have no backend list.
func (c *Cloud) UpdateLoadBalancer(context.Context, string, *v1.Service, []*v1.Node) error {
	return nil
}

// EnsureLoadBalancerDeleted: the file's load balancers are the operator's
// to remove.
func (c *Cloud) EnsureLoadBalancerDeleted(context.Context, string, *v1.Service) error { return nil }
