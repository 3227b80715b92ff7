package raftnode

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The forwarding RPC is one request, one response, in order, on a
// connection of kind connRPC. Connections are pooled by the caller and never
// carry two requests at once.
//
//	request:  op u8 | budget i64 (ns, 0 = none) | len u32 | payload
//	response: status u8 | index u64 | len u32 | payload
//
// The leader reads a whole request before acting on it, so a request whose
// bytes were not all written cannot have been proposed.
const (
	opForward   byte = 1 // payload: the command; answer: its log index
	opReadIndex byte = 2 // no payload; answer: the leader's confirmed commit index
	opConfirm   byte = 3 // no payload; answer: the server's term (index) and the ID of the leader it follows
)

// Response statuses. Each says whether the command may have been proposed,
// which is what decides if the caller may retry elsewhere.
const (
	statusOK         byte = 0
	statusNotLeader  byte = 1 // not proposed; payload: u16 len, leader addr, leader id
	statusShutdown   byte = 2 // not proposed: the target is shutting down
	statusNotApplied byte = 3 // not proposed: raft refused it (back-pressure); payload: message
	statusUnknown    byte = 4 // proposed, outcome unknown; payload: message
	statusError      byte = 5 // read failed (opReadIndex only); payload: message
)

// maxRPCPayload bounds one request or response payload. Commands are
// bounded far lower by the store (etcd: 1.5 MiB); this only refuses garbage.
const maxRPCPayload = 64 << 20

type rpcRequest struct {
	op      byte
	budget  time.Duration
	payload []byte
}

type rpcResponse struct {
	status  byte
	index   uint64
	payload []byte
}

func writeRequest(w *bufio.Writer, req rpcRequest) error {
	var hdr [13]byte
	hdr[0] = req.op
	binary.BigEndian.PutUint64(hdr[1:9], uint64(req.budget))
	binary.BigEndian.PutUint32(hdr[9:13], uint32(len(req.payload)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := w.Write(req.payload); err != nil {
		return err
	}
	return w.Flush()
}

func readRequest(r *bufio.Reader) (rpcRequest, error) {
	var hdr [13]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return rpcRequest{}, err
	}
	p, err := readPayload(r, binary.BigEndian.Uint32(hdr[9:13]))
	if err != nil {
		return rpcRequest{}, err
	}
	return rpcRequest{op: hdr[0], budget: time.Duration(binary.BigEndian.Uint64(hdr[1:9])), payload: p}, nil
}

func writeResponse(w *bufio.Writer, resp rpcResponse) error {
	var hdr [13]byte
	hdr[0] = resp.status
	binary.BigEndian.PutUint64(hdr[1:9], resp.index)
	binary.BigEndian.PutUint32(hdr[9:13], uint32(len(resp.payload)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := w.Write(resp.payload); err != nil {
		return err
	}
	return w.Flush()
}

func readResponse(r *bufio.Reader) (rpcResponse, error) {
	var hdr [13]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return rpcResponse{}, err
	}
	p, err := readPayload(r, binary.BigEndian.Uint32(hdr[9:13]))
	if err != nil {
		return rpcResponse{}, err
	}
	return rpcResponse{status: hdr[0], index: binary.BigEndian.Uint64(hdr[1:9]), payload: p}, nil
}

func readPayload(r *bufio.Reader, n uint32) ([]byte, error) {
	if n > maxRPCPayload {
		return nil, fmt.Errorf("rpc payload of %d bytes exceeds the %d byte limit", n, maxRPCPayload)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, err
	}
	return p, nil
}

// encodeLeader and decodeLeader carry a NotLeaderError's leader.
func encodeLeader(addr, id string) []byte {
	b := make([]byte, 2, 2+len(addr)+len(id))
	binary.BigEndian.PutUint16(b, uint16(len(addr)))
	return append(append(b, addr...), id...)
}

func decodeLeader(p []byte) *NotLeaderError {
	if len(p) < 2 {
		return &NotLeaderError{}
	}
	n := int(binary.BigEndian.Uint16(p))
	if 2+n > len(p) {
		return &NotLeaderError{}
	}
	return &NotLeaderError{LeaderAddr: string(p[2 : 2+n]), LeaderID: string(p[2+n:])}
}

// applyStatus turns the leader's Apply error into a response. Unknown
// outcome is checked first: it wraps ErrShutdown when the node stopped after
// enqueue.
func applyStatus(index uint64, err error) rpcResponse {
	var nle *NotLeaderError
	switch {
	case err == nil:
		return rpcResponse{status: statusOK, index: index}
	case errors.Is(err, ErrUnknownOutcome):
		return rpcResponse{status: statusUnknown, payload: []byte(err.Error())}
	case errors.As(err, &nle):
		return rpcResponse{status: statusNotLeader, payload: encodeLeader(nle.LeaderAddr, nle.LeaderID)}
	case errors.Is(err, ErrNotApplied):
		return rpcResponse{status: statusNotApplied, payload: []byte(err.Error())}
	case errors.Is(err, ErrShutdown):
		return rpcResponse{status: statusShutdown}
	default:
		// Apply has no other error before enqueue; anything else may have
		// been proposed.
		return rpcResponse{status: statusUnknown, payload: []byte(err.Error())}
	}
}

// readStatus turns the leader's read-index error into a response.
func readStatus(index uint64, err error) rpcResponse {
	var nle *NotLeaderError
	switch {
	case err == nil:
		return rpcResponse{status: statusOK, index: index}
	case errors.As(err, &nle):
		return rpcResponse{status: statusNotLeader, payload: encodeLeader(nle.LeaderAddr, nle.LeaderID)}
	case errors.Is(err, ErrShutdown):
		return rpcResponse{status: statusShutdown}
	default:
		return rpcResponse{status: statusError, payload: []byte(err.Error())}
	}
}

// rpcConn is a pooled client connection with its buffers.
type rpcConn struct {
	net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func newRPCConn(c net.Conn) *rpcConn {
	return &rpcConn{Conn: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}
}

// stale reports whether a pooled connection must not be reused.
func (c *rpcConn) stale() bool {
	// The peer never sends unsolicited bytes, so buffered data is garbage.
	return c.r.Buffered() > 0 || peerClosed(c.Conn)
}
