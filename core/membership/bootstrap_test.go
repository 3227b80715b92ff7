package membership

import (
	"github.com/keelson/keelson/internal/serfpool"

	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestWaitForBootstrapThreeServers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var pools []*serfpool.Pool
	for i, n := range []string{"s3", "s1", "s2"} {
		c := fastConfig(t, n)
		c.BootstrapExpect = 3
		if i > 0 {
			c.Join = []string{pools[0].Addr()}
		}
		pools = append(pools, startPool(t, ctx, c))
	}
	type result struct {
		servers []serfpool.Member
		err     error
	}
	results := make(chan result, len(pools))
	for _, p := range pools {
		go func() {
			s, err := WaitForBootstrap(ctx, p, 3)
			results <- result{s, err}
		}()
	}
	want := raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: "s1", Address: "s1:8300"},
		{Suffrage: raft.Voter, ID: "s2", Address: "s2:8300"},
		{Suffrage: raft.Voter, ID: "s3", Address: "s3:8300"},
	}}
	for range pools {
		r := <-results
		if r.err != nil {
			t.Fatalf("WaitForBootstrap: %v", r.err)
		}
		if got := BootstrapConfiguration(r.servers); !reflect.DeepEqual(got, want) {
			t.Errorf("bootstrap configuration = %+v, want %+v", got, want)
		}
	}
}

func TestWaitForBootstrapRefusesExistingCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c1 := fastConfig(t, "s1")
	c1.BootstrapExpect = 3
	p1 := startPool(t, ctx, c1)

	c2 := fastConfig(t, "old")
	c2.BootstrapExpect = 3
	c2.Join = []string{p1.Addr()}
	p2 := startPool(t, ctx, c2)

	waitErr := make(chan error, 1)
	go func() {
		_, err := WaitForBootstrap(ctx, p1, 3) // cannot be reached: only two servers
		waitErr <- err
	}()
	// A server that gains raft state (it joined a cluster) must stop
	// everyone else from bootstrapping a new one.
	eventually(t, "s1 sees old", func() bool { return statusOf(p1, "old") == serfpool.StatusAlive })
	if err := p2.SetBootstrapped(); err != nil {
		t.Fatal(err)
	}
	err := <-waitErr
	if !errors.Is(err, ErrClusterExists) || !strings.Contains(err.Error(), `"old"`) {
		t.Errorf("WaitForBootstrap = %v, want ErrClusterExists naming old", err)
	}

	// A node that has raft state itself never bootstraps again.
	c3 := fastConfig(t, "restarted")
	c3.Bootstrapped = true
	p3 := startPool(t, ctx, c3)
	if _, err := WaitForBootstrap(ctx, p3, 1); !errors.Is(err, ErrClusterExists) {
		t.Errorf("WaitForBootstrap on a bootstrapped server = %v, want ErrClusterExists", err)
	}
}

func TestBootstrapServersRules(t *testing.T) {
	alive := func(name string, expect int) serfpool.Member {
		return serfpool.Member{Name: name, Role: serfpool.RoleServer, RaftAddr: name + ":8300", Status: serfpool.StatusAlive, BootstrapExpect: expect}
	}
	failed := alive("f", 3)
	failed.Status = serfpool.StatusFailed
	agent := serfpool.Member{Name: "a", Role: serfpool.RoleAgent, Status: serfpool.StatusAlive}
	tests := []struct {
		name    string
		members []serfpool.Member
		want    string
		wantErr string
	}{
		{"counts alive servers only", []serfpool.Member{alive("s1", 3), failed, agent, alive("s2", 3)}, "s1,s2", ""},
		{"expect mismatch", []serfpool.Member{alive("s1", 3), alive("s2", 5)}, "", "BootstrapExpect"},
		{"unset expect is fine", []serfpool.Member{alive("s1", 3), alive("s2", 0)}, "s1,s2", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := bootstrapServers(tc.members, 3)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := strings.Join(memberNames(got), ","); s != tc.want {
				t.Errorf("servers = %s, want %s", s, tc.want)
			}
		})
	}
}

func TestWaitForBootstrapStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := fastConfig(t, "alone")
	c.BootstrapExpect = 3
	p := startPool(t, context.Background(), c)
	done := make(chan error, 1)
	go func() {
		_, err := WaitForBootstrap(ctx, p, 3)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("WaitForBootstrap after cancel = %v, want context.Canceled", err)
	}
}
