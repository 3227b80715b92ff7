package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
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

// resolveTokens reads a server's token files. The tokens' strength is
// checked where they are used (core/server): config imports nothing of ours.
func (c *Server) resolveTokens() []error {
	var errs []error
	if err := tokenFromFile(&c.Token, c.TokenFile, "token (--token)", "tokenFile (--token-file)"); err != nil {
		errs = append(errs, err)
	}
	if err := tokenFromFile(&c.AgentToken, c.AgentTokenFile, "agentToken (--agent-token)", "agentTokenFile (--agent-token-file)"); err != nil {
		errs = append(errs, err)
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
