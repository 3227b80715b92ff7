package agenttoken

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/keelson/keelson/internal/join"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

const caHash = "ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01"

var quiet = slog.New(slog.DiscardHandler)

func fileToken(t *testing.T, dir string) join.Token {
	t.Helper()
	b, err := os.ReadFile(File(dir))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := join.ParseToken(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestEnsureCreatesOnceAndEveryServerVerifies(t *testing.T) {
	ctx := context.Background()
	kube := fake.NewClientset()
	if _, err := Verify(ctx, kube, "anything-at-all-0123"); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("Verify before Ensure: %v, want ErrNoRecord", err)
	}
	first, second := t.TempDir(), t.TempDir()
	created, err := Ensure(ctx, kube, first, "", caHash, quiet)
	if err != nil || !created {
		t.Fatalf("first Ensure: created=%v %v", created, err)
	}
	tok := fileToken(t, first)
	if tok.CAHash != caHash || len(tok.Secret) != 64 {
		t.Errorf("agent token %q: want K10<ca hash>::<64 hex>", tok)
	}
	if fi, _ := os.Stat(File(first)); fi.Mode().Perm() != 0o600 {
		t.Errorf("agent token file mode %o, want 600", fi.Mode().Perm())
	}
	// A second server finds the record: it creates nothing and writes no file.
	if created, err := Ensure(ctx, kube, second, "", caHash, quiet); err != nil || created {
		t.Fatalf("second Ensure: created=%v %v", created, err)
	}
	if _, err := os.Stat(File(second)); !os.IsNotExist(err) {
		t.Errorf("second server wrote an agent token file: %v", err)
	}
	if ok, err := Verify(ctx, kube, tok.Secret); !ok || err != nil {
		t.Errorf("Verify(agent secret) = %v, %v", ok, err)
	}
	if ok, _ := Verify(ctx, kube, tok.Secret+"x"); ok {
		t.Error("Verify accepted another secret")
	}
	s, _ := kube.CoreV1().Secrets(Namespace).Get(ctx, SecretName, metav1.GetOptions{})
	for k, v := range s.Data {
		if strings.Contains(string(v), tok.Secret) {
			t.Errorf("record key %s holds the secret itself", k)
		}
	}
}

func TestRotateReplacesTheTokenEverywhere(t *testing.T) {
	ctx := context.Background()
	kube := fake.NewClientset()
	a, b := t.TempDir(), t.TempDir()
	if _, err := Ensure(ctx, kube, a, "given-agent-token-0123456789", caHash, quiet); err != nil {
		t.Fatal(err)
	}
	if got := fileToken(t, a).Secret; got != "given-agent-token-0123456789" {
		t.Fatalf("agent token file holds %q, want the given secret", got)
	}
	tok, err := Rotate(ctx, kube, b, caHash)
	if err != nil {
		t.Fatal(err)
	}
	if fileToken(t, b) != tok {
		t.Error("Rotate did not write the new token to its data dir")
	}
	if ok, _ := Verify(ctx, kube, "given-agent-token-0123456789"); ok {
		t.Error("the old agent token still verifies after Rotate")
	}
	if ok, _ := Verify(ctx, kube, tok.Secret); !ok {
		t.Error("the new agent token does not verify")
	}
	// Server a restarts: its file is stale and goes.
	if _, err := Ensure(ctx, kube, a, "", caHash, quiet); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(File(a)); !os.IsNotExist(err) {
		t.Errorf("stale agent token file kept after a rotation elsewhere: %v", err)
	}
}
