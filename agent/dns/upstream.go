package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// errNoUpstream is returned when the node's resolver file lists no server
// to forward to; the client gets SERVFAIL at once instead of a timeout.
var errNoUpstream = errors.New("no upstream nameserver in the node's resolver configuration")

// Upstream forwards queries to the nameservers of the node's resolv.conf,
// re-reading the file when it changes.
type Upstream struct {
	path    string
	exclude []netip.AddrPort // where we listen: forwarding there would loop
	timeout time.Duration

	mu       sync.Mutex
	servers  []string
	modTime  time.Time
	size     int64
	checked  time.Time
	loadErr  error
	recheck  time.Duration
	now      func() time.Time
	port     string // overrides resolv.conf's port 53 (tests)
	udp, tcp *dns.Client
}

// NewUpstream reads path (typically /etc/resolv.conf) lazily; exclude are
// addresses never forwarded to.
func NewUpstream(path string, exclude []netip.AddrPort, timeout time.Duration) *Upstream {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	return &Upstream{path: path, exclude: exclude, timeout: timeout, recheck: 2 * time.Second, now: time.Now,
		udp: &dns.Client{Net: "udp", Timeout: timeout, UDPSize: dns.DefaultMsgSize},
		tcp: &dns.Client{Net: "tcp", Timeout: timeout}}
}

// Servers returns the current upstream servers ("ip:port").
func (u *Upstream) Servers() ([]string, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.now()
	if !u.checked.IsZero() && now.Sub(u.checked) < u.recheck {
		return u.servers, u.loadErr
	}
	u.checked = now
	fi, err := os.Stat(u.path)
	if err != nil {
		u.servers, u.loadErr = nil, fmt.Errorf("dns: reading upstream servers: %w", err)
		return nil, u.loadErr
	}
	if fi.ModTime().Equal(u.modTime) && fi.Size() == u.size && u.loadErr == nil && u.servers != nil {
		return u.servers, nil
	}
	u.modTime, u.size = fi.ModTime(), fi.Size()
	cfg, err := dns.ClientConfigFromFile(u.path)
	if err != nil {
		u.servers, u.loadErr = nil, fmt.Errorf("dns: parsing %s: %w", u.path, err)
		return nil, u.loadErr
	}
	var servers []string
	for _, s := range cfg.Servers {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		port := cfg.Port
		if u.port != "" {
			port = u.port
		}
		ap, err := netip.ParseAddrPort(net.JoinHostPort(ip.Unmap().String(), port))
		if err != nil || slices.Contains(u.exclude, ap) {
			continue
		}
		servers = append(servers, ap.String())
	}
	u.servers, u.loadErr = servers, nil
	return servers, nil
}

// Exchange forwards req to the upstream servers in order until one
// answers; over TCP if the client asked over TCP or a UDP answer was
// truncated.
func (u *Upstream) Exchange(ctx context.Context, req *dns.Msg, overTCP bool) (*dns.Msg, error) {
	servers, err := u.Servers()
	if err != nil {
		return nil, err
	}
	if len(servers) == 0 {
		return nil, errNoUpstream
	}
	var errs []error
	for _, s := range servers {
		c := u.udp
		if overTCP {
			c = u.tcp
		}
		resp, _, err := c.ExchangeContext(ctx, req, s)
		if err == nil && resp.Truncated && !overTCP {
			resp, _, err = u.tcp.ExchangeContext(ctx, req, s)
		}
		if err == nil {
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", s, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("dns: no upstream server answered: %w", errors.Join(errs...))
}
