package upstreamstack

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A stack that cannot start says which binary failed and leaves nothing
// behind in the work dir.
func TestStartFailsNamingTheMissingBinaryAndCleansUp(t *testing.T) {
	work := t.TempDir()
	missing := filepath.Join(work, "no-such-etcd")
	_, err := Start(context.Background(), Spec{EtcdBin: missing, APIServerBin: "kube-apiserver",
		KCMBin: "kube-controller-manager", SchedulerBin: "kube-scheduler", WorkDir: work, Prefix: "stack-test-"})
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Start with a missing etcd: err = %v, want one naming %s", err, missing)
	}
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Errorf("work dir holds %d entries after a failed start, want none (the stack's temp dir is removed)", len(left))
	}
}

func TestKCMArgsNameTheClusterFiles(t *testing.T) {
	args := strings.Join(KCMArgs("/k/admin.kubeconfig", "/k/sa.key", "/k/ca.crt"), " ")
	for _, want := range []string{"--kubeconfig /k/admin.kubeconfig", "--service-account-private-key-file /k/sa.key", "--root-ca-file /k/ca.crt", "--leader-elect=false"} {
		if !strings.Contains(args, want) {
			t.Errorf("KCMArgs = %s, want %q in it", args, want)
		}
	}
}
