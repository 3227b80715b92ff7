package raftnode

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestHeldResults(t *testing.T) {
	h := newHeldResults()
	h.record(1, "ignored") // no holds: nothing is kept
	if _, ok := h.take(1); ok {
		t.Fatal("a result applied while nobody waited was kept")
	}

	h.hold(5) // a forwarder that saw applied=5
	h.record(5, "at floor")
	h.record(6, "r6")
	h.hold(6) // a second forwarder, later
	h.record(7, "r7")
	h.record(8, "r8")
	if _, ok := h.take(5); ok {
		t.Fatal("index at the floor was kept; the forwarder's index is always above it")
	}
	if res, ok := h.take(7); !ok || res != "r7" {
		t.Fatalf("take(7) = %v, %v", res, ok)
	}
	if _, ok := h.take(7); ok {
		t.Fatal("a result was returned twice")
	}
	// Releasing the older hold drops what only it could claim (6), keeps
	// what the newer one still may (8).
	h.release(5)
	if _, ok := h.take(6); ok {
		t.Fatal("index 6 kept after the only hold at or below it was released")
	}
	if res, ok := h.take(8); !ok || res != "r8" {
		t.Fatalf("take(8) after releasing the older hold = %v, %v", res, ok)
	}
	h.record(9, "r9")
	h.release(6)
	if len(h.byIndex) != 0 || len(h.floors) != 0 {
		t.Fatalf("after every hold was released: %d results, %d floors held", len(h.byIndex), len(h.floors))
	}
}

func TestHeldResultsBounded(t *testing.T) {
	h := newHeldResults()
	h.hold(0)
	for i := uint64(1); i <= maxHeldResults+10; i++ {
		h.record(i, i)
	}
	if len(h.byIndex) != maxHeldResults {
		t.Fatalf("holding %d results, want the bound %d", len(h.byIndex), maxHeldResults)
	}
	if _, ok := h.take(1); ok {
		t.Fatal("the oldest result survived past the bound")
	}
	if res, ok := h.take(maxHeldResults + 10); !ok || res != uint64(maxHeldResults+10) {
		t.Fatalf("newest result: %v, %v", res, ok)
	}
}

func TestRPCFraming(t *testing.T) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	req := rpcRequest{op: opForward, budget: 3 * time.Second, payload: []byte("set k v")}
	if err := writeRequest(w, req); err != nil {
		t.Fatal(err)
	}
	resp := rpcResponse{status: statusNotLeader, index: 42, payload: encodeLeader("10.0.0.1:7000", "n2")}
	if err := writeResponse(w, resp); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(&buf)
	gotReq, err := readRequest(r)
	if err != nil || gotReq.op != req.op || gotReq.budget != req.budget || string(gotReq.payload) != "set k v" {
		t.Fatalf("request round trip: %+v, %v", gotReq, err)
	}
	gotResp, err := readResponse(r)
	if err != nil || gotResp.status != resp.status || gotResp.index != 42 {
		t.Fatalf("response round trip: %+v, %v", gotResp, err)
	}
	if nle := decodeLeader(gotResp.payload); nle.LeaderAddr != "10.0.0.1:7000" || nle.LeaderID != "n2" {
		t.Fatalf("leader round trip: %+v", nle)
	}
	if nle := decodeLeader([]byte{0xff}); nle.LeaderAddr != "" {
		t.Fatalf("truncated leader payload decoded as %+v", nle)
	}

	buf.Reset()
	buf.Write([]byte{opForward, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	if _, err := readRequest(bufio.NewReader(&buf)); err == nil {
		t.Fatal("a 4 GiB payload length was accepted")
	}
}

// TestApplyStatus: the leader's answer must never turn a possibly proposed
// command into a retryable status.
func TestApplyStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want byte
	}{
		{"ok", nil, statusOK},
		{"not leader", &NotLeaderError{LeaderAddr: "a:1", LeaderID: "n2"}, statusNotLeader},
		{"not applied", fmt.Errorf("%w: enqueue timeout", ErrNotApplied), statusNotApplied},
		{"shutdown before enqueue", fmt.Errorf("%w: x", ErrShutdown), statusShutdown},
		{"shutdown after enqueue", fmt.Errorf("%w: %w", ErrUnknownOutcome, ErrShutdown), statusUnknown},
		{"leadership lost", fmt.Errorf("%w: lost", ErrUnknownOutcome), statusUnknown},
		{"anything else", errors.New("disk on fire"), statusUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := applyStatus(7, tt.err).status; got != tt.want {
				t.Fatalf("applyStatus(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}
