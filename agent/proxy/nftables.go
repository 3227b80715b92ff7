package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// nft runs the nft binary (Debian's nftables package). Batches go through
// `nft -f -`: one transaction per sync, which the kernel applies
// atomically or not at all.
type nft struct {
	bin string
}

func newNFT() (*nft, error) {
	bin, err := exec.LookPath("nft")
	if err != nil {
		return nil, fmt.Errorf("the nftables proxy mode needs the nft binary (apt-get install nftables, or use --proxy-mode=iptables): %w", err)
	}
	return &nft{bin: bin}, nil
}

func (n *nft) run(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, n.bin, args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, firstLines(stderr.String(), 6))
	}
	return out.Bytes(), nil
}

// Apply runs one batch as a transaction.
func (n *nft) Apply(ctx context.Context, batch []byte) error {
	_, err := n.run(ctx, batch, "-f", "-")
	return err
}

// HasTable reports whether the proxy's table of family exists.
func (n *nft) HasTable(ctx context.Context, family v1.IPFamily) (bool, error) {
	out, err := n.run(ctx, nil, "list", "tables", nftFamily(family))
	if err != nil {
		return false, err
	}
	return bytes.Contains(out, []byte("table "+nftFamily(family)+" "+NFTTableName+"\n")), nil
}

// Objects lists the chains and sets of the proxy's table of family (none
// when it does not exist); -t leaves the elements out.
func (n *nft) Objects(ctx context.Context, family v1.IPFamily) (NFTObjects, error) {
	var objs NFTObjects
	if ok, err := n.HasTable(ctx, family); err != nil || !ok {
		return objs, err
	}
	out, err := n.run(ctx, nil, "-t", "list", "table", nftFamily(family), NFTTableName)
	if err != nil {
		return objs, err
	}
	return parseNFTObjects(out), nil
}

// parseNFTObjects reads the chain, set and map names of `nft -t list
// table` output.
func parseNFTObjects(out []byte) NFTObjects {
	var objs NFTObjects
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<16), 1<<24)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[2] != "{" {
			continue
		}
		switch f[0] {
		case "chain":
			objs.Chains = append(objs.Chains, f[1])
		case "set", "map":
			objs.Sets = append(objs.Sets, f[1])
		}
	}
	return objs
}

// DeleteTable removes the proxy's table of family if it exists.
func (n *nft) DeleteTable(ctx context.Context, family v1.IPFamily) error {
	ok, err := n.HasTable(ctx, family)
	if err != nil || !ok {
		return err
	}
	_, err = n.run(ctx, nil, "delete", "table", nftFamily(family), NFTTableName)
	return err
}

// CleanupNFT deletes the proxy's nftables tables of families (all when
// empty); without the nft binary there is nothing it could have made.
func CleanupNFT(ctx context.Context, families []v1.IPFamily) error {
	n, err := newNFT()
	if err != nil {
		return nil
	}
	if len(families) == 0 {
		families = []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}
	}
	var errs []error
	for _, f := range families {
		if err := n.DeleteTable(ctx, f); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
		}
	}
	return errors.Join(errs...)
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(strings.TrimSpace(s), "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, "\n")
}
