package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cloudprovider "k8s.io/cloud-provider"
)

func TestFileCloud(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cloud.json")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"instances":[{"node":"a1","id":"i-1","type":"m1","zone":"z1","region":"r1","addresses":[{"type":"InternalIP","address":"10.0.0.5"}]}],
	        "loadBalancers":[{"service":"ns/web","ip":"203.0.113.80"}]}`)
	c := &Cloud{path: path}
	ctx := context.Background()
	a1 := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "a1"}}
	md, err := c.InstanceMetadata(ctx, a1)
	if err != nil || md.ProviderID != "filecloud://i-1" || md.Zone != "z1" || md.Region != "r1" || md.InstanceType != "m1" || len(md.NodeAddresses) != 1 {
		t.Fatalf("metadata %+v, %v", md, err)
	}
	if _, err := c.InstanceMetadata(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "a2"}}); !errors.Is(err, cloudprovider.InstanceNotFound) {
		t.Errorf("an unknown node: %v, want InstanceNotFound", err)
	}
	st, err := c.EnsureLoadBalancer(ctx, "k", &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}}, nil)
	if err != nil || st.Ingress[0].IP != "203.0.113.80" {
		t.Fatalf("load balancer %+v, %v", st, err)
	}
	if _, err := c.EnsureLoadBalancer(ctx, "k", &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "other"}}, nil); err == nil {
		t.Error("a service the file does not describe got a load balancer")
	}
	// The instance is deleted from the cloud: the node-lifecycle
	// controller will delete its Node.
	a1.Spec.ProviderID = "filecloud://i-1"
	write(`{"instances":[]}`)
	if ok, err := c.InstanceExists(ctx, a1); ok || err != nil {
		t.Errorf("InstanceExists after removal = %v, %v", ok, err)
	}
	write(`{"instances":[{"node":"a1"}]}`)
	if _, err := c.InstanceExists(ctx, a1); err == nil {
		t.Error("an instance without id was accepted")
	}
}
