package ruleset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"

	"github.com/coreos/go-iptables/iptables"
)

// Family is the IP family a table set belongs to.
type Family int

const (
	IPv4 Family = iota
	IPv6
)

func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// Jump is a rule in a built-in chain (PREROUTING, FORWARD, ...) that sends
// traffic into a component's own chain. Built-in chains are shared with the
// rest of the system, so these rules are inserted one by one through
// go-iptables, never through a restore that would rewrite the chain.
type Jump struct {
	Table, Chain string
	// Args are the rule's matches and target, e.g. "-m", "conntrack", ...,
	// "-j", "KEELSON-FORWARD".
	Args []string
}

// IPTables is iptables of one family on this node (in the network namespace
// of the calling process).
type IPTables struct {
	family  Family
	ipt     *iptables.IPTables
	restore string
	legacy  bool

	mu sync.Mutex // iptables-restore of one family at a time from this process
}

// NewIPTables finds iptables and iptables-restore for family.
func NewIPTables(family Family) (*IPTables, error) {
	proto, restore := iptables.ProtocolIPv4, "iptables-restore"
	if family == IPv6 {
		proto, restore = iptables.ProtocolIPv6, "ip6tables-restore"
	}
	ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Timeout(10))
	if err != nil {
		return nil, fmt.Errorf("iptables (%s): %w (install the iptables package)", family, err)
	}
	path, err := exec.LookPath(restore)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (install the iptables package)", restore, err)
	}
	out, _ := exec.Command(path, "--version").CombinedOutput()
	return &IPTables{family: family, ipt: ipt, restore: path, legacy: bytes.Contains(out, []byte("legacy"))}, nil
}

// Family is the IP family these tables filter.
func (t *IPTables) Family() Family { return t.family }

// HasRandomFully reports whether MASQUERADE supports --random-fully.
func (t *IPTables) HasRandomFully() bool { return t.ipt.HasRandomFully() }

// Restore applies a payload with iptables-restore --noflush: every chain it
// declares is flushed and rewritten, every other chain is left alone. Each
// table of the payload is committed atomically.
func (t *IPTables) Restore(ctx context.Context, payload []byte) error {
	if len(payload) == 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	args := []string{"--noflush"}
	if t.legacy {
		args = append(args, "-w", "10") // the legacy backend takes the xtables lock
	}
	cmd := exec.CommandContext(ctx, t.restore, args...)
	cmd.Stdin = bytes.NewReader(payload)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s%s", t.restore, err, strings.TrimSpace(stderr.String()), failedLine(payload, stderr.String()))
	}
	return nil
}

// failedLine quotes the payload line iptables-restore names in its error,
// which is what an operator needs to see.
func failedLine(payload []byte, stderr string) string {
	var n int
	i := strings.Index(stderr, "line: ")
	if i < 0 {
		return ""
	}
	if _, err := fmt.Sscanf(stderr[i+len("line: "):], "%d", &n); err != nil || n < 1 {
		return ""
	}
	lines := bytes.Split(payload, []byte("\n"))
	if n > len(lines) {
		return ""
	}
	return fmt.Sprintf(" (line %d: %s)", n, lines[n-1])
}

// ListChains lists the chains of a table whose names own reports as the
// component's.
func (t *IPTables) ListChains(table string, own func(string) bool) ([]string, error) {
	chains, err := t.ipt.ListChains(table)
	if err != nil {
		return nil, fmt.Errorf("listing %s chains of table %s: %w", t.family, table, err)
	}
	var out []string
	for _, c := range chains {
		if own(c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// ExistingChains lists the owned chains of each table.
func (t *IPTables) ExistingChains(tables []string, own func(string) bool) (map[string][]string, error) {
	out := map[string][]string{}
	for _, tb := range tables {
		c, err := t.ListChains(tb, own)
		if err != nil {
			return nil, err
		}
		out[tb] = c
	}
	return out, nil
}

// EnsureJump inserts j at the top of its chain unless it is already there
// somewhere. The target chain must exist.
func (t *IPTables) EnsureJump(j Jump) error {
	ok, err := t.ipt.Exists(j.Table, j.Chain, j.Args...)
	if err != nil {
		return fmt.Errorf("checking %s jump %s/%s %v: %w", t.family, j.Table, j.Chain, j.Args, err)
	}
	if ok {
		return nil
	}
	if err := t.ipt.Insert(j.Table, j.Chain, 1, j.Args...); err != nil {
		return fmt.Errorf("inserting %s jump %s/%s %v: %w", t.family, j.Table, j.Chain, j.Args, err)
	}
	return nil
}

// EnsureFirst makes j the first rule of its chain: rules that accept
// traffic (the proxy's, a firewall's) must not come before rules that deny
// it. It moves the rule when something was inserted above it.
func (t *IPTables) EnsureFirst(j Jump) error {
	// Listing the whole chain, not rule 1: go-iptables' ListById panics on
	// an empty chain.
	rules, err := t.ipt.List(j.Table, j.Chain)
	if err != nil {
		return fmt.Errorf("listing %s %s/%s: %w", t.family, j.Table, j.Chain, err)
	}
	for _, r := range rules {
		if strings.HasPrefix(r, "-A ") {
			if sameRule(r, j) {
				return nil
			}
			break
		}
	}
	if err := t.DeleteJump(j); err != nil {
		return err
	}
	if err := t.ipt.Insert(j.Table, j.Chain, 1, j.Args...); err != nil {
		return fmt.Errorf("inserting %s jump %s/%s %v: %w", t.family, j.Table, j.Chain, j.Args, err)
	}
	return nil
}

// sameRule compares a rule as iptables -S prints it with j. iptables prints
// rules normalised, so j's arguments must be written the same way (quoted
// comments, -m before its options), which every Jump of this project is.
func sameRule(listed string, j Jump) bool {
	return strings.TrimSpace(listed) == "-A "+j.Chain+" "+strings.Join(j.Args, " ")
}

// DeleteJump removes j wherever it is, if it is.
func (t *IPTables) DeleteJump(j Jump) error {
	if err := t.ipt.DeleteIfExists(j.Table, j.Chain, j.Args...); err != nil {
		var e *iptables.Error
		if errors.As(err, &e) && e.IsNotExist() {
			return nil
		}
		return fmt.Errorf("deleting %s jump %s/%s %v: %w", t.family, j.Table, j.Chain, j.Args, err)
	}
	return nil
}

// Cleanup removes a component from the tables: its jumps first (so that
// nothing refers to its chains any more), then every chain it owns in the
// given tables. Absent rules and chains are not an error, so it is safe to
// run on a node that never ran the component.
func (t *IPTables) Cleanup(ctx context.Context, jumps []Jump, tables []string, own func(string) bool) error {
	var errs []error
	for _, j := range jumps {
		ok, err := t.ipt.ChainExists(j.Table, j.Chain)
		if err != nil || !ok {
			continue
		}
		if err := t.DeleteJump(j); err != nil {
			errs = append(errs, err)
		}
	}
	existing, err := t.ExistingChains(tables, own)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	w := NewWriter(own)
	p := w.Payload(New(), existing)
	if err := t.Restore(ctx, p.Data); err != nil {
		errs = append(errs, fmt.Errorf("deleting %s chains: %w", t.family, err))
	}
	return errors.Join(errs...)
}

// JumpsTo lists the rules of a built-in chain that jump to target, as Jumps
// that DeleteJump removes: for cleaning up jumps whose exact arguments
// depend on configuration the cleaner may not have.
func (t *IPTables) JumpsTo(table, chain, target string) ([]Jump, error) {
	rules, err := t.ipt.List(table, chain)
	if err != nil {
		return nil, fmt.Errorf("listing %s %s/%s: %w", t.family, table, chain, err)
	}
	var out []Jump
	for _, r := range rules {
		f := strings.Fields(r)
		if len(f) < 4 || f[0] != "-A" || f[len(f)-2] != "-j" || f[len(f)-1] != target {
			continue
		}
		if strings.Contains(r, `"`) {
			continue // quoted arguments cannot be split back; Keelson writes none here
		}
		out = append(out, Jump{Table: table, Chain: chain, Args: f[2:]})
	}
	return out, nil
}

// ChainExists reports whether a chain exists in a table.
func (t *IPTables) ChainExists(table, chain string) (bool, error) {
	return t.ipt.ChainExists(table, chain)
}
