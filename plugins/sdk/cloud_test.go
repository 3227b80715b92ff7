package sdk

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	cloudprovider "k8s.io/cloud-provider"
)

// fakeCloud has instances (one per node name it knows) and, optionally,
// load balancers.
type fakeCloud struct {
	instances map[string]*cloudprovider.InstanceMetadata
	lb        bool
}

func (f *fakeCloud) Initialize(cloudprovider.ControllerClientBuilder, <-chan struct{}) {}
func (f *fakeCloud) LoadBalancer() (cloudprovider.LoadBalancer, bool)                  { return nil, f.lb }
func (f *fakeCloud) Instances() (cloudprovider.Instances, bool)                        { return nil, false }
func (f *fakeCloud) InstancesV2() (cloudprovider.InstancesV2, bool)                    { return f, f.instances != nil }
func (f *fakeCloud) Zones() (cloudprovider.Zones, bool)                                { return nil, false }
func (f *fakeCloud) Clusters() (cloudprovider.Clusters, bool)                          { return nil, false }
func (f *fakeCloud) Routes() (cloudprovider.Routes, bool)                              { return nil, false }
func (f *fakeCloud) ProviderName() string                                              { return "fake" }
func (f *fakeCloud) HasClusterID() bool                                                { return true }
func (f *fakeCloud) InstanceShutdown(context.Context, *v1.Node) (bool, error)          { return false, nil }
func (f *fakeCloud) InstanceExists(_ context.Context, n *v1.Node) (bool, error) {
	return f.instances[n.Name] != nil, nil
}
func (f *fakeCloud) InstanceMetadata(_ context.Context, n *v1.Node) (*cloudprovider.InstanceMetadata, error) {
	if md := f.instances[n.Name]; md != nil {
		return md, nil
	}
	return nil, cloudprovider.InstanceNotFound
}

func testEnv() Env { return Env{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))} }

func TestCloudControllersFollowTheProvider(t *testing.T) {
	client := fake.NewClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	if _, err := cloudControllers(&fakeCloud{}, client, factory, CloudOptions{}.withDefaults(), testEnv()); err == nil || !strings.Contains(err.Error(), "nothing to run") {
		t.Errorf("a provider with nothing: %v, want an error saying nothing runs", err)
	}
	runs, err := cloudControllers(&fakeCloud{instances: map[string]*cloudprovider.InstanceMetadata{}, lb: false}, client, factory, CloudOptions{}.withDefaults(), testEnv())
	if err != nil || len(runs) != 2 {
		t.Errorf("instances only: %d controllers (%v), want cloud-node and cloud-node-lifecycle", len(runs), err)
	}
}

// TestCloudNodeInitialised: upstream's cloud-node controller, run by the
// SDK, initialises a Node registered with the uninitialized taint from the
// provider's metadata, and the node-lifecycle controller deletes a Node
// whose instance is gone.
func TestCloudNodeInitialised(t *testing.T) {
	taint := v1.Taint{Key: "node.cloudprovider.kubernetes.io/uninitialized", Value: "true", Effect: v1.TaintEffectNoSchedule}
	ready := []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}
	n1 := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: v1.NodeSpec{Taints: []v1.Taint{taint}}, Status: v1.NodeStatus{Conditions: ready}}
	gone := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "gone"}, Spec: v1.NodeSpec{ProviderID: "fake://gone"},
		Status: v1.NodeStatus{Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionFalse}}}}
	client := fake.NewClientset(n1, gone)
	cloud := &fakeCloud{instances: map[string]*cloudprovider.InstanceMetadata{"n1": {
		ProviderID: "fake://i-1", InstanceType: "big", Zone: "z1", Region: "r1",
		NodeAddresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.0.0.1"}, {Type: v1.NodeExternalIP, Address: "203.0.113.1"}},
	}}}
	factory := informers.NewSharedInformerFactory(client, 0)
	runs, err := cloudControllers(cloud, client, factory, CloudOptions{NodeMonitorPeriod: 100 * time.Millisecond}.withDefaults(), testEnv())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	factory.Start(ctx.Done())
	done := make(chan error)
	go func() { done <- runAll(ctx, runs) }()
	var got *v1.Node
	err = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		got, err = client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		_, goneErr := client.CoreV1().Nodes().Get(ctx, "gone", metav1.GetOptions{})
		// k8s.io/cloud-provider's node controller writes the addresses
		// in a second update, after the taint goes: wait for both.
		return err == nil && got.Spec.ProviderID != "" && len(got.Spec.Taints) == 0 && len(got.Status.Addresses) > 0 && goneErr != nil, nil
	})
	if err != nil {
		t.Fatalf("node %+v not initialised (or node gone not deleted): %v", got, err)
	}
	if got.Spec.ProviderID != "fake://i-1" || got.Labels[v1.LabelTopologyZone] != "z1" || got.Labels[v1.LabelTopologyRegion] != "r1" ||
		got.Labels[v1.LabelInstanceTypeStable] != "big" || len(got.Status.Addresses) != 2 {
		t.Errorf("initialised node: providerID %q labels %v addresses %v", got.Spec.ProviderID, got.Labels, got.Status.Addresses)
	}
	cancel()
	<-done
}
