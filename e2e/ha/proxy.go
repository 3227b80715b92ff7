package ha

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a userspace TCP proxy that can delay what it forwards and drop
// connections: tc netem is unavailable here, so this is how raft traffic
// gets latency and loss. A chunk read from one side is written to the other
// after the delay, in order; a "drop" resets the whole connection, which is
// what losing a segment for good looks like to TCP.
type Proxy struct {
	ln     net.Listener
	target string
	// blocked, when set, says whether bytes from one IP to another are cut
	// off by a partition: they are held, as TCP would keep retransmitting
	// them, until it says otherwise.
	blocked func(from, to string) bool

	mu      sync.Mutex
	delay   time.Duration
	jitter  time.Duration
	drop    float64 // probability, per chunk forwarded, of resetting the connection
	conns   map[net.Conn]struct{}
	closed  bool
	dropped int
	total   int
	wg      sync.WaitGroup
}

// StartProxy listens on addr (host:0 for a free port) and forwards every
// connection to target. It is closed when the test ends.
func StartProxy(t testing.TB, addr, target string, blocked func(from, to string) bool) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("proxy listening on %s: %v", addr, err)
	}
	p := &Proxy{ln: ln, target: target, blocked: blocked, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is where the proxy listens.
func (p *Proxy) Addr() *net.TCPAddr { return p.ln.Addr().(*net.TCPAddr) }

// Set changes the delay (plus up to jitter) of every chunk forwarded from
// now on, and the probability that forwarding a chunk resets its
// connection instead.
func (p *Proxy) Set(delay, jitter time.Duration, drop float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay, p.jitter, p.drop = delay, jitter, drop
}

// Stats returns how many connections the proxy carried and how many of
// them it reset.
func (p *Proxy) Stats() (total, dropped int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total, p.dropped
}

// Close stops accepting, closes every connection and waits for its
// goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(in)
	}
}

// track registers a connection; it returns false once the proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) serve(in net.Conn) {
	defer p.wg.Done()
	out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		in.Close()
		return
	}
	if !p.track(in) || !p.track(out) {
		in.Close()
		out.Close()
		return
	}
	p.mu.Lock()
	p.total++
	p.mu.Unlock()
	var once sync.Once
	reset := func(dropped bool) {
		once.Do(func() {
			for _, c := range []net.Conn{in, out} {
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // RST, as a lost connection would end
				}
				c.Close()
			}
			p.mu.Lock()
			delete(p.conns, in)
			delete(p.conns, out)
			if dropped {
				p.dropped++
			}
			p.mu.Unlock()
		})
	}
	var wg sync.WaitGroup
	wg.Add(2)
	src := hostIP(in.RemoteAddr())
	dst := hostIP(out.RemoteAddr())
	go func() { defer wg.Done(); p.pipe(out, in, src, dst, reset) }()
	go func() { defer wg.Done(); p.pipe(in, out, dst, src, reset) }()
	wg.Wait()
	reset(false)
}

type chunk struct {
	b  []byte
	at time.Time
}

// pipe copies src to dst, each chunk after the delay in force when it was
// read. Either side ending ends both.
func (p *Proxy) pipe(dst, src net.Conn, fromIP, toIP string, reset func(dropped bool)) {
	ch := make(chan chunk, 256)
	go func() {
		defer close(ch)
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				p.mu.Lock()
				delay, jitter, drop := p.delay, p.jitter, p.drop
				p.mu.Unlock()
				if drop > 0 && rand.Float64() < drop {
					reset(true)
					return
				}
				if jitter > 0 {
					delay += rand.N(jitter)
				}
				ch <- chunk{append([]byte(nil), buf[:n]...), time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		if d := time.Until(c.at); d > 0 {
			time.Sleep(d)
		}
		for p.blocked != nil && p.blocked(fromIP, toIP) && !p.isClosed() {
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := dst.Write(c.b); err != nil {
			if !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
				reset(false)
			}
			break
		}
	}
	for range ch { // let the reader finish after a failed write
	}
	reset(false)
}

func (p *Proxy) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func hostIP(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	host, _, _ := net.SplitHostPort(a.String())
	return host
}
