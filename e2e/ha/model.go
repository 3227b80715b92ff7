package ha

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// OpKind is what a client asked of a register.
type OpKind int

const (
	OpRead OpKind = iota
	OpWrite
	OpCAS
)

func (k OpKind) String() string { return [...]string{"read", "write", "cas"}[k] }

// RegisterInput is one client request on one key. Every written value is
// unique in a run, so a CAS on a mod revision is the same as a CAS on the
// value that the client read at that revision: both are modelled as
// comparing the value.
type RegisterInput struct {
	Kind   OpKind
	Key    string
	Expect string // OpCAS: the value the register must hold
	Value  string // OpWrite, OpCAS: the value written
}

// RegisterOutput is what the client saw.
type RegisterOutput struct {
	// Unknown: the request failed or timed out, so it may or may not have
	// taken effect. Its return time is "never" in the history.
	Unknown bool
	OK      bool   // OpCAS: the comparison held and the value was written
	Value   string // OpRead: the value read
	Rev     int64  // revision of the write, or of the store at the read
}

// unknownReturn is the return time of operations whose outcome is unknown:
// they may take effect at any point after their call.
const unknownReturn = int64(1) << 62

// RegisterModel is a set of independent registers with read, write and
// compare-and-swap, partitioned by key; every key starts at initial.
func RegisterModel(initial string) porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byKey := map[string][]porcupine.Operation{}
			var keys []string
			for _, op := range history {
				k := op.Input.(RegisterInput).Key
				if _, ok := byKey[k]; !ok {
					keys = append(keys, k)
				}
				byKey[k] = append(byKey[k], op)
			}
			var out [][]porcupine.Operation
			for _, k := range keys {
				out = append(out, byKey[k])
			}
			return out
		},
		Init: func() any { return initial },
		Step: func(state, input, output any) (bool, any) {
			st, in, out := state.(string), input.(RegisterInput), output.(RegisterOutput)
			switch in.Kind {
			case OpRead:
				return out.Unknown || out.Value == st, st
			case OpWrite:
				return true, in.Value
			default: // OpCAS
				holds := st == in.Expect
				if out.Unknown {
					if holds {
						return true, in.Value
					}
					return true, st
				}
				if out.OK {
					return holds, in.Value
				}
				return !holds, st
			}
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(RegisterInput), output.(RegisterOutput)
			res := "?"
			switch {
			case out.Unknown:
			case in.Kind == OpRead:
				res = out.Value
			case in.Kind == OpCAS:
				res = fmt.Sprint(out.OK)
			default:
				res = "ok"
			}
			switch in.Kind {
			case OpRead:
				return fmt.Sprintf("get(%s) -> %s @%d", in.Key, res, out.Rev)
			case OpWrite:
				return fmt.Sprintf("put(%s, %s) -> %s @%d", in.Key, in.Value, res, out.Rev)
			default:
				return fmt.Sprintf("cas(%s, %s->%s) -> %s @%d", in.Key, in.Expect, in.Value, res, out.Rev)
			}
		},
		DescribeState: func(state any) string { return state.(string) },
	}
}

// CheckLinearizable runs porcupine on the history and fails the test if it
// is not linearizable, writing a visualization next to the temp dir. A
// check that runs out of time is reported, not failed. It returns the
// verdict.
func CheckLinearizable(t testing.TB, model porcupine.Model, ops []porcupine.Operation, timeout time.Duration) porcupine.CheckResult {
	t.Helper()
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
	t.Logf("linearizability: %s (%d operations, checked in %s)", res, len(ops), time.Since(start).Round(time.Millisecond))
	switch res {
	case porcupine.Illegal:
		name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
		path := filepath.Join(os.TempDir(), fmt.Sprintf("keelson-ha-%s-%d.html", name, time.Now().Unix()))
		if err := porcupine.VisualizePath(model, info, path); err != nil {
			t.Logf("writing visualization: %v", err)
			path = "(not written)"
		}
		t.Errorf("history is not linearizable; visualization: %s", path)
	case porcupine.Unknown:
		t.Logf("linearizability check gave up after %s: no violation found, none ruled out", timeout)
	}
	return res
}
