package announcer

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
)

func TestARPRequestRoundTrip(t *testing.T) {
	client := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	req := arpFrame(arpRequest, broadcastMAC, client, netip.MustParseAddr("10.99.1.50"), make(net.HardwareAddr, 6), netip.MustParseAddr("10.99.1.200"))
	q, ok := parseARPRequest(req)
	if !ok {
		t.Fatal("a request we built does not parse")
	}
	if !bytes.Equal(q.senderMAC, client) || q.senderIP != netip.MustParseAddr("10.99.1.50") || q.target != netip.MustParseAddr("10.99.1.200") {
		t.Errorf("parsed %+v", q)
	}
	node := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	reply := arpFrame(arpReply, q.senderMAC, node, q.target, q.senderMAC, q.senderIP)
	if _, ok := parseARPRequest(reply); ok {
		t.Error("a reply parsed as a request: the responder would answer its own answers")
	}
	if !bytes.Equal(reply[0:6], client) || !bytes.Equal(reply[6:12], node) {
		t.Errorf("reply Ethernet header %x: want to the client from the node", reply[:14])
	}
	// The reply says: 10.99.1.200 is at node's MAC.
	if !bytes.Equal(reply[22:28], node) || !bytes.Equal(reply[28:32], []byte{10, 99, 1, 200}) {
		t.Errorf("reply sender %x %v", reply[22:28], reply[28:32])
	}
	if _, ok := parseARPRequest(req[:30]); ok {
		t.Error("a truncated frame parsed")
	}
}
