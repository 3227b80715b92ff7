// Package agenttoken keeps a cluster's agent token: the credential node
// agents join with, which can only obtain node credentials (see
// internal/join for the two kinds of token).
//
// Every server must accept the same agent token, and an operator must be
// able to replace it without re-creating the cluster. So the token is not a
// cluster secret copied at join time but a record in the replicated store:
// the Secret kube-system/keelson-agent-token holds the token secret's hash
// (join.SecretHash) under the key "sha256", never the secret itself. Each
// server's supervisor reads it through its own API server when an agent
// asks for credentials, so a rotation on one server takes effect on all at
// once; nodes that already joined keep their certificates, and renew them
// with the new token.
//
// The first server to find no record creates one, from --agent-token (or
// --agent-token-file) when given, else from a new random secret, and writes
// the full token, "K10<CA hash>::<secret>", to DATA_DIR/agent-token (mode
// 0600) for the operator. Rotate replaces the record and that file. Only the
// server that created or rotated the token has the file; a stale file left
// behind on a server by a rotation elsewhere is removed when that server
// starts.
package agenttoken

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/keelson/keelson/internal/join"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Where the record lives.
const (
	Namespace  = metav1.NamespaceSystem
	SecretName = "keelson-agent-token"
	HashKey    = "sha256"
	// FileName is the agent token's file in a server's data dir.
	FileName = "agent-token"
)

// ErrNoRecord means the cluster has no agent token yet: its servers have not
// finished starting.
var ErrNoRecord = errors.New("the cluster has no agent token yet")

// File is the agent token file in a server's data dir.
func File(dataDir string) string { return filepath.Join(dataDir, FileName) }

// Ensure makes sure the cluster has an agent token. given is the secret
// from --agent-token, or "". With no record it creates one (from given, the
// secret in this server's agent-token file, or a new random one) and writes
// the file; created says it did. With a record, a given secret that differs
// is reported in the log (the record wins: it may have been rotated), and a
// local file that differs is removed as stale.
func Ensure(ctx context.Context, c kubernetes.Interface, dataDir, given, caHash string, log *slog.Logger) (created bool, err error) {
	secrets := c.CoreV1().Secrets(Namespace)
	for {
		cur, err := secrets.Get(ctx, SecretName, metav1.GetOptions{})
		if err == nil {
			reconcileLocal(cur, dataDir, given, log)
			return false, nil
		}
		if !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("reading the agent token record: %w", err)
		}
		secret := given
		if secret == "" {
			secret = readSecret(File(dataDir))
		}
		if secret == "" {
			if secret, err = join.GenerateSecret(); err != nil {
				return false, err
			}
		}
		_, err = secrets.Create(ctx, record(secret), metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			continue // another server created it first: take its record
		}
		if err != nil {
			return false, fmt.Errorf("storing the agent token record: %w", err)
		}
		if err := writeFile(dataDir, join.Token{CAHash: caHash, Secret: secret}); err != nil {
			return true, err
		}
		return true, nil
	}
}

// reconcileLocal compares this server's view with the stored record.
func reconcileLocal(cur *v1.Secret, dataDir, given string, log *slog.Logger) {
	want := string(cur.Data[HashKey])
	if given != "" && join.SecretHash(given) != want {
		log.Warn("--agent-token differs from the cluster's agent token (rotated with `keelson token rotate`?); the cluster's is in force: drop the flag or pass the current token")
	}
	path := File(dataDir)
	if s := readSecret(path); s != "" && join.SecretHash(s) != want {
		log.Info("removing a stale agent token file: the cluster's agent token was rotated on another server", "file", path)
		if err := os.Remove(path); err != nil {
			log.Warn("removing a stale agent token file", "file", path, "err", err)
		}
	}
}

// Rotate replaces the cluster's agent token with a new random one, writes it
// to dataDir's agent-token file and returns it. Nodes that joined keep their
// certificates; new nodes, and renewals, need the new token.
func Rotate(ctx context.Context, c kubernetes.Interface, dataDir, caHash string) (join.Token, error) {
	secret, err := join.GenerateSecret()
	if err != nil {
		return join.Token{}, err
	}
	secrets := c.CoreV1().Secrets(Namespace)
	want := record(secret)
	cur, err := secrets.Get(ctx, SecretName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = secrets.Create(ctx, want, metav1.CreateOptions{})
	case err == nil:
		cur.Data = want.Data
		_, err = secrets.Update(ctx, cur, metav1.UpdateOptions{})
	}
	if err != nil {
		return join.Token{}, fmt.Errorf("storing the new agent token: %w", err)
	}
	tok := join.Token{CAHash: caHash, Secret: secret}
	return tok, writeFile(dataDir, tok)
}

func record(secret string) *v1.Secret {
	return &v1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: SecretName, Namespace: Namespace,
			Annotations: map[string]string{"keelson.dev/description": "hash of the agent join token; rotate with `keelson token rotate`"}},
		Type: v1.SecretTypeOpaque,
		Data: map[string][]byte{HashKey: []byte(join.SecretHash(secret))},
	}
}

// readSecret returns the secret of the token in path, "" when there is
// none or it is unreadable.
func readSecret(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	tok, err := join.ParseToken(strings.TrimSpace(string(b)))
	if err != nil {
		return ""
	}
	return tok.Secret
}

// writeFile stores the full token with mode 0600, through a rename so a
// crash never leaves half a token.
func writeFile(dataDir string, tok join.Token) error {
	path := File(dataDir)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing the agent token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing the agent token: %w", err)
	}
	return nil
}
