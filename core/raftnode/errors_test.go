package raftnode

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
)

func TestMapApplyError(t *testing.T) {
	notLeader := func() error { return &NotLeaderError{LeaderAddr: "10.0.0.1:7000", LeaderID: "n2"} }
	tests := []struct {
		name     string
		err      error
		enqueued bool
		want     []error // every one must match errors.Is
		wantNot  []error // none may match
	}{
		{"success", nil, true, nil, nil},
		{"not leader", raft.ErrNotLeader, true, []error{ErrNotLeader}, []error{ErrUnknownOutcome}},
		{"enqueue timeout", raft.ErrEnqueueTimeout, false,
			[]error{ErrNotApplied, raft.ErrEnqueueTimeout}, []error{ErrUnknownOutcome}},
		{"leadership lost", raft.ErrLeadershipLost, true,
			[]error{ErrUnknownOutcome, raft.ErrLeadershipLost}, []error{ErrNotLeader}},
		{"transfer in progress", raft.ErrLeadershipTransferInProgress, true,
			[]error{ErrUnknownOutcome}, []error{ErrNotLeader, ErrNotApplied}},
		{"ctx deadline after enqueue", fmt.Errorf("wait: %w", context.DeadlineExceeded), true,
			[]error{ErrUnknownOutcome, context.DeadlineExceeded}, nil},
		{"shutdown after enqueue", raft.ErrRaftShutdown, true,
			[]error{ErrUnknownOutcome, ErrShutdown}, []error{ErrNotApplied}},
		{"shutdown before enqueue", raft.ErrRaftShutdown, false,
			[]error{ErrShutdown}, []error{ErrUnknownOutcome}},
		{"other error after enqueue", errors.New("disk on fire"), true, []error{ErrUnknownOutcome}, nil},
		{"other error before enqueue", errors.New("disk on fire"), false, nil, []error{ErrUnknownOutcome}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mapApplyError(tt.err, tt.enqueued, notLeader)
			if (got == nil) != (tt.err == nil) {
				t.Fatalf("mapApplyError(%v) = %v", tt.err, got)
			}
			for _, w := range tt.want {
				if !errors.Is(got, w) {
					t.Errorf("mapApplyError(%v) = %v, want errors.Is %v", tt.err, got, w)
				}
			}
			for _, w := range tt.wantNot {
				if errors.Is(got, w) {
					t.Errorf("mapApplyError(%v) = %v, must not match %v", tt.err, got, w)
				}
			}
		})
	}
	var nle *NotLeaderError
	if err := mapApplyError(raft.ErrNotLeader, false, notLeader); !errors.As(err, &nle) || nle.LeaderAddr != "10.0.0.1:7000" {
		t.Fatalf("not-leader error %v does not carry the leader address", err)
	}
}

func TestNotLeaderErrorMessage(t *testing.T) {
	tests := []struct {
		err  NotLeaderError
		want string
	}{
		{NotLeaderError{}, "raftnode: not the leader (leader unknown)"},
		{NotLeaderError{LeaderAddr: "h:1", LeaderID: "n1"}, "raftnode: not the leader (leader is n1 at h:1)"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}
