package localcloud

import (
	"context"

	v1 "k8s.io/api/core/v1"
	cloudprovider "k8s.io/cloud-provider"
)

// On bare metal the Node object is the machine's only registration: there
// is no cloud API to ask whether an instance still exists or is shut down.
// The provider therefore never reports a Node's instance gone (Nodes are
// removed by their operator, and an unreachable node is the nodelifecycle
// plugin's business, through its Ready condition), and its metadata is
// what the node reported about itself.

// InstanceExists: a registered Node's machine exists.
func (p *Provider) InstanceExists(context.Context, *v1.Node) (bool, error) { return true, nil }

// InstanceShutdown: there is no power state to read.
func (p *Provider) InstanceShutdown(context.Context, *v1.Node) (bool, error) { return false, nil }

// InstanceMetadata is the node's own: provider ID local://NAME (or the one
// it has), the addresses its agent reported (InternalIP, ExternalIP from
// --node-external-ip, Hostname), the instance type, zone and region from
// its labels (set with --node-label).
func (p *Provider) InstanceMetadata(_ context.Context, n *v1.Node) (*cloudprovider.InstanceMetadata, error) {
	id := n.Spec.ProviderID
	if id == "" {
		id = ProviderName + "://" + n.Name
	}
	return &cloudprovider.InstanceMetadata{
		ProviderID:    id,
		InstanceType:  n.Labels[v1.LabelInstanceTypeStable],
		NodeAddresses: append([]v1.NodeAddress(nil), n.Status.Addresses...),
		Zone:          n.Labels[v1.LabelTopologyZone],
		Region:        n.Labels[v1.LabelTopologyRegion],
	}, nil
}
