package host

import (
	"context"
	"testing"

	"github.com/keelson/keelson/plugins/proto"
)

// fakeMembers serves a fixed member list.
type fakeMembers struct{ list proto.MemberList }

func (f fakeMembers) Watch(ctx context.Context, send func(proto.MemberList) error) error {
	if err := send(f.list); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// A node's host tells the plugin which node it runs on and serves it the
// gossip member view over go-plugin's broker; the plugin runs its node
// part.
func TestNodeHostGivesTheNodeAndTheMemberView(t *testing.T) {
	cfg := testConfig(&syncBuffer{})
	cfg.NodeName = "n1"
	cfg.Members = fakeMembers{proto.MemberList{Members: []proto.Member{
		{Name: "n1", Status: proto.MemberAlive}, {Name: "n2", Status: proto.MemberFailed},
	}}}
	s := startSupervisor(t, cfg, spec("nodeplug", "healthy"))
	st := waitFor(t, s, "nodeplug", func(st PluginStatus) bool { return st.Ready && st.Message != "running" })
	if want := "node=n1 members=n1:alive,n2:failed"; st.Message != want {
		t.Errorf("node plugin reported %q; want %q", st.Message, want)
	}
}
