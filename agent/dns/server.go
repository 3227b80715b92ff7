package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Options configure the cluster DNS server of a node.
type Options struct {
	// Addresses are the IPs to serve on: the cluster DNS address (which
	// pods' resolv.conf names) held by the node. Required.
	Addresses []netip.Addr
	// Port to listen on, UDP and TCP (default 53).
	Port int
	// ClusterDomain is the cluster's DNS domain (default cluster.local).
	ClusterDomain string
	// ResolvConf is the node's resolver file, whose nameservers get the
	// queries for other domains (default /etc/resolv.conf).
	ResolvConf string
	// TTL of the cluster's records in seconds (default 5, like CoreDNS's
	// kubernetes plugin: short, as services and endpoints change).
	TTL uint32
	// UpstreamTimeout bounds one query to one upstream server (default 2s).
	UpstreamTimeout time.Duration
	// Metrics, when set, counts queries (NewMetrics).
	Metrics *Metrics
}

// ApplyDefaults fills zero fields with defaults.
func (o *Options) ApplyDefaults() {
	if o.Port == 0 {
		o.Port = 53
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = "cluster.local"
	}
	if o.ResolvConf == "" {
		o.ResolvConf = "/etc/resolv.conf"
	}
	if o.TTL == 0 {
		o.TTL = 5
	}
}

// Validate checks the options, naming the field at fault.
func (o *Options) Validate() error {
	var errs []error
	if len(o.Addresses) == 0 {
		errs = append(errs, errors.New("dns: addresses is empty; set the cluster DNS address (--cluster-dns)"))
	}
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("dns: port %d is out of range", o.Port))
	}
	if _, ok := dns.IsDomainName(o.ClusterDomain); !ok || strings.Trim(o.ClusterDomain, ".") == "" {
		errs = append(errs, fmt.Errorf("dns: clusterDomain %q is not a domain name (e.g. cluster.local)", o.ClusterDomain))
	}
	return errors.Join(errs...)
}

// Server answers DNS queries for the cluster domain from a Catalog and
// forwards the others to the node's upstream servers.
type Server struct {
	opts     Options
	resolver *Resolver
	upstream *Upstream
	log      *slog.Logger
}

// New returns a server; Run serves.
func New(opts Options, catalog Catalog, log *slog.Logger) (*Server, error) {
	opts.ApplyDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Server{
		opts:     opts,
		resolver: &Resolver{Zone: strings.ToLower(dns.Fqdn(opts.ClusterDomain)), TTL: opts.TTL, Catalog: catalog},
		upstream: NewUpstream(opts.ResolvConf, listenAddrs(opts), opts.UpstreamTimeout),
		log:      log.With("component", "dns"),
	}, nil
}

func listenAddrs(o Options) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range o.Addresses {
		out = append(out, netip.AddrPortFrom(a.Unmap(), uint16(o.Port)))
	}
	return out
}

// Run listens on every address (UDP and TCP) and serves until ctx ends.
// It fails at once if an address cannot be bound.
func (s *Server) Run(ctx context.Context) error {
	var servers []*dns.Server
	for _, a := range s.opts.Addresses {
		addr := net.JoinHostPort(a.String(), strconv.Itoa(s.opts.Port))
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			shutdown(servers)
			return fmt.Errorf("dns: listening on %s/udp: %w", addr, err)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			pc.Close()
			shutdown(servers)
			return fmt.Errorf("dns: listening on %s/tcp: %w", addr, err)
		}
		servers = append(servers, &dns.Server{PacketConn: pc, Handler: s}, &dns.Server{Listener: l, Handler: s})
	}
	return s.serve(ctx, servers)
}

// Serve serves on listeners made by the caller (tests, or a namespace
// the caller entered to create them) until ctx ends.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, l net.Listener) error {
	return s.serve(ctx, []*dns.Server{{PacketConn: pc, Handler: s}, {Listener: l, Handler: s}})
}

func (s *Server) serve(ctx context.Context, servers []*dns.Server) error {
	errc := make(chan error, len(servers))
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- srv.ActivateAndServe()
		}()
	}
	s.log.Info("serving cluster DNS", "addresses", s.opts.Addresses, "port", s.opts.Port, "domain", s.opts.ClusterDomain)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("dns: serving: %w", err)
	}
	shutdown(servers)
	wg.Wait()
	return err
}

func shutdown(servers []*dns.Server) {
	for _, srv := range servers {
		_ = srv.Shutdown()
	}
}

// ServeDNS answers one query.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	start := time.Now()
	resp, plugin := s.handle(w, req)
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = int(max(opt.UDPSize(), dns.MinMsgSize))
		if resp.IsEdns0() == nil { // forwarded answers carry their own
			resp.SetEdns0(min(uint16(size), 1232), false)
		}
	}
	if _, tcp := w.RemoteAddr().(*net.TCPAddr); tcp {
		size = dns.MaxMsgSize
	}
	resp.Truncate(size)
	// Counted before the answer leaves, so a client that has its answer
	// finds it counted.
	s.opts.Metrics.observe(w, req, resp, plugin, time.Since(start))
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("writing a DNS response", "client", w.RemoteAddr(), "err", err)
	}
}

// handle answers req and names the part that answered (a metrics label).
func (s *Server) handle(w dns.ResponseWriter, req *dns.Msg) (*dns.Msg, string) {
	resp := new(dns.Msg)
	if req.Opcode != dns.OpcodeQuery || len(req.Question) != 1 {
		return resp.SetRcode(req, dns.RcodeNotImplemented), pluginNone
	}
	q := req.Question[0]
	_, overTCP := w.RemoteAddr().(*net.TCPAddr)
	a := s.resolver.Resolve(q)
	if a.Forward {
		return s.forward(req, overTCP), pluginForward
	}
	resp.SetReply(req)
	resp.Authoritative = true
	resp.RecursionAvailable = true
	resp.Rcode = a.Rcode
	resp.Answer, resp.Ns, resp.Extra = a.Answer, a.Ns, a.Extra
	if a.Chase != "" {
		s.chase(resp, q, a.Chase, overTCP)
	}
	return resp, pluginKubernetes
}

// forward relays a query for a name outside the cluster.
func (s *Server) forward(req *dns.Msg, overTCP bool) *dns.Msg {
	ctx, cancel := context.WithTimeout(context.Background(), 3*s.upstreamTimeout())
	defer cancel()
	up := req.Copy()
	up.Id = dns.Id()
	resp, err := s.upstream.Exchange(ctx, up, overTCP)
	if err != nil {
		s.log.Debug("forwarding failed", "name", req.Question[0].Name, "err", err)
		return new(dns.Msg).SetRcode(req, dns.RcodeServerFailure)
	}
	resp.Id = req.Id
	return resp
}

// chase appends the upstream records of an ExternalName target. The CNAME
// alone is still a valid answer if the target cannot be resolved.
func (s *Server) chase(resp *dns.Msg, q dns.Question, target string, overTCP bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*s.upstreamTimeout())
	defer cancel()
	m := new(dns.Msg)
	m.SetQuestion(target, q.Qtype)
	m.RecursionDesired = true
	up, err := s.upstream.Exchange(ctx, m, overTCP)
	if err != nil {
		s.log.Debug("resolving an ExternalName target", "target", target, "err", err)
		return
	}
	resp.Answer = append(resp.Answer, up.Answer...)
}

func (s *Server) upstreamTimeout() time.Duration {
	if s.opts.UpstreamTimeout > 0 {
		return s.opts.UpstreamTimeout
	}
	return 2 * time.Second
}
