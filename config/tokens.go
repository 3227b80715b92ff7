package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/keelson/keelson/internal/join"
)

// Tokens are best passed in files (tokenFile, agentTokenFile): a token on
// the command line shows in `ps` to every user of the host.

// tokenFromFile fills *value from the file named by file when file is set.
// Both set is an error: which one wins would be a guess.
func tokenFromFile(value *string, file, valueField, fileField string) error {
	if file == "" {
		return nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("%s: %w", fileField, err)
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case tok == "":
		return fmt.Errorf("%s: %s is empty; write the token into it", fileField, file)
	case *value != "" && *value != tok: // equal: validated before
		return fmt.Errorf("%s and %s: set only one (prefer %s: a token on the command line shows in ps)", valueField, fileField, fileField)
	}
	*value = tok
	return nil
}

// resolveTokens reads a server's token files and checks a chosen agent
// token (a chosen server token is checked when the data dir first stores
// it, so a cluster created before the entropy rule keeps its token).
func (c *Server) resolveTokens() []error {
	var errs []error
	if err := tokenFromFile(&c.Token, c.TokenFile, "token (--token)", "tokenFile (--token-file)"); err != nil {
		errs = append(errs, err)
	}
	if err := tokenFromFile(&c.AgentToken, c.AgentTokenFile, "agentToken (--agent-token)", "agentTokenFile (--agent-token-file)"); err != nil {
		errs = append(errs, err)
	}
	if c.AgentToken != "" {
		tok, err := join.ParseToken(c.AgentToken)
		if err == nil {
			err = join.CheckSecret(tok.Secret, "agentToken (--agent-token)")
			c.AgentToken = tok.Secret
		}
		if err != nil {
			errs = append(errs, err)
		}
		if c.Token != "" {
			if st, err := join.ParseToken(c.Token); err == nil && st.Secret == tok.Secret {
				errs = append(errs, errors.New("agentToken (--agent-token): must differ from the server token (--token): the agent token must not open the cluster's secrets"))
			}
		}
	}
	return errs
}

// etcdListenErrors refuses a TCP etcd listener reachable from beyond this
// host without client certificates: it would serve every object, Secrets
// included, to anyone who can connect (etcd's --client-cert-auth).
func (c *Server) etcdListenErrors() []error {
	if c.EtcdClientCA != "" {
		if c.EtcdListen == "" {
			return []error{errors.New("etcdClientCA (--etcd-client-ca): set only with etcdListen (--etcd-listen)")}
		}
		if _, err := os.Stat(c.EtcdClientCA); err != nil {
			return []error{fmt.Errorf("etcdClientCA (--etcd-client-ca): %w", err)}
		}
		return nil
	}
	host, _, err := net.SplitHostPort(c.EtcdListen)
	if c.EtcdListen == "" || err != nil {
		return nil // validHostPort reports a malformed address
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return []error{fmt.Errorf("etcdListen (--etcd-listen): %q is not a loopback address, and it would serve the whole store, Secrets included, "+
		"without authentication: keep it on 127.0.0.1, or require client certificates with etcdClientCA (--etcd-client-ca FILE, "+
		"the CA that signs your etcdctl certificates)", c.EtcdListen)}
}
