package ha

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The model must tell the histories a correct store can produce from those
// it cannot; these need no cluster (and no root).
func TestRegisterModel(t *testing.T) {
	op := func(client int, in RegisterInput, out RegisterOutput, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret}
	}
	read := func(v string) (RegisterInput, RegisterOutput) {
		return RegisterInput{Kind: OpRead, Key: "k"}, RegisterOutput{Value: v}
	}
	write := func(v string, unknown bool) (RegisterInput, RegisterOutput) {
		return RegisterInput{Kind: OpWrite, Key: "k", Value: v}, RegisterOutput{OK: !unknown, Unknown: unknown}
	}
	cas := func(expect, v string, ok, unknown bool) (RegisterInput, RegisterOutput) {
		return RegisterInput{Kind: OpCAS, Key: "k", Expect: expect, Value: v}, RegisterOutput{OK: ok, Unknown: unknown}
	}
	at := func(in RegisterInput, out RegisterOutput) func(client int, call, ret int64) porcupine.Operation {
		return func(client int, call, ret int64) porcupine.Operation { return op(client, in, out, call, ret) }
	}
	tests := []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"write then read", []porcupine.Operation{
			at(write("a", false))(0, 1, 2), at(read("a"))(1, 3, 4)}, porcupine.Ok},
		{"stale read after an acknowledged write", []porcupine.Operation{
			at(write("a", false))(0, 1, 2), at(read(InitialValue))(1, 3, 4)}, porcupine.Illegal},
		{"concurrent read may see either", []porcupine.Operation{
			at(write("a", false))(0, 1, 5), at(read(InitialValue))(1, 2, 3), at(read("a"))(2, 3, 4)}, porcupine.Ok},
		{"unknown write may apply late", []porcupine.Operation{
			at(write("a", true))(0, 1, unknownReturn), at(read(InitialValue))(1, 3, 4), at(read("a"))(1, 5, 6)}, porcupine.Ok},
		{"unknown write may never apply", []porcupine.Operation{
			at(write("a", true))(0, 1, unknownReturn), at(read(InitialValue))(1, 3, 4)}, porcupine.Ok},
		{"a value cannot come back after it was overwritten", []porcupine.Operation{
			at(write("a", true))(0, 1, unknownReturn), at(read("a"))(1, 3, 4), at(read(InitialValue))(1, 5, 6)}, porcupine.Illegal},
		{"cas succeeds on the expected value", []porcupine.Operation{
			at(cas(InitialValue, "b", true, false))(0, 1, 2), at(read("b"))(1, 3, 4)}, porcupine.Ok},
		{"cas cannot fail while the expected value holds", []porcupine.Operation{
			at(cas(InitialValue, "b", false, false))(0, 1, 2)}, porcupine.Illegal},
		{"two cas from the same value cannot both succeed", []porcupine.Operation{
			at(cas(InitialValue, "b", true, false))(0, 1, 4), at(cas(InitialValue, "c", true, false))(1, 2, 3)}, porcupine.Illegal},
		{"lost acknowledged write", []porcupine.Operation{
			at(write("a", false))(0, 1, 2), at(write("b", false))(1, 3, 4), at(read("a"))(2, 5, 6)}, porcupine.Illegal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := porcupine.CheckOperationsTimeout(RegisterModel(InitialValue), tt.ops, 10*time.Second); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestDiffEvents(t *testing.T) {
	a := []Event{{Key: "k", Value: "1", Rev: 5}, {Key: "k", Value: "2", Rev: 6}, {Key: "k", Value: "3", Rev: 7}}
	for _, tt := range []struct {
		name string
		got  []Event
		same bool
	}{
		{"equal", a, true},
		{"gap", []Event{a[0], a[2]}, false},
		{"duplicate", []Event{a[0], a[1], a[1], a[2]}, false},
		{"missing tail", a[:2], false},
	} {
		if d := diffEvents(a, tt.got); (d == "") != tt.same {
			t.Errorf("%s: diffEvents = %q", tt.name, d)
		}
	}
}

// TestThrough: a watcher's events past the sentinel (a write whose outcome
// was unknown, committed late) are left out of the comparison; a duplicate
// or disorder before it is not.
func TestThrough(t *testing.T) {
	e := func(rev int64) Event { return Event{Key: "k", Value: fmt.Sprint(rev), Rev: rev} }
	for _, tt := range []struct {
		name string
		evs  []Event
		want []Event
	}{
		{"late write", []Event{e(5), e(6), e(7), e(8)}, []Event{e(5), e(6), e(7)}},
		{"nothing after", []Event{e(5), e(7)}, []Event{e(5), e(7)}},
		{"duplicate kept", []Event{e(5), e(6), e(6), e(7), e(9)}, []Event{e(5), e(6), e(6), e(7)}},
		{"disorder kept", []Event{e(6), e(5), e(7)}, []Event{e(6), e(5), e(7)}},
	} {
		if got := through(tt.evs, 7); !slices.Equal(got, tt.want) {
			t.Errorf("%s: through = %v, want %v", tt.name, got, tt.want)
		}
	}
}
