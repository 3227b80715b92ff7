// Package nodeproof lets a node agent prove, in its gossip tags, that it
// holds the key its node name is bound to, so that holding the gossip key is
// not enough to keep another node alive.
//
// The supervisor binds a node name to the SHA-256 of its client key's
// public key (KeyAnnotation on the Node). The agent signs its node name and
// the address it gossips on with that key and publishes the public key and
// signature as one tag; the raft leader accepts the member as that node's
// heartbeat only if the key hashes to the Node's binding and the signature
// covers the member's name and the address the pool probes. A replayed tag
// names the victim's address, where probes go unanswered once it is dead.
//
// Agents that prove themselves say so on their own Node (RequiredAnnotation,
// which NodeRestriction lets only that node write); the leader demands the
// proof from exactly those nodes, so agents of an older version, which
// publish none, keep working through a rolling upgrade.
package nodeproof

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
)

// KeyAnnotation on a Node is the hex SHA-256 of the PKIX DER public key its
// client certificates are issued for (set by the supervisor).
const KeyAnnotation = "keelson.dev/node-key-sha256"

// RequiredAnnotation on a Node, set by its own agent, says the agent proves
// its gossip membership: the leader then accepts no member without a proof.
const RequiredAnnotation = "keelson.dev/gossip-proof"

const context = "keelson node gossip proof v1\x00"

// KeyHash is what KeyAnnotation holds for pub.
func KeyHash(pub any) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// Sign returns the tag value proving that the holder of key is node name,
// gossiping at addr (host:port).
func Sign(key *ecdsa.PrivateKey, name, addr string) (string, error) {
	if key.Curve != elliptic.P256() {
		return "", errors.New("nodeproof: the node key must be ECDSA P-256")
	}
	digest := message(name, addr)
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		return "", err
	}
	raw, err := key.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		return "", err
	}
	// The compressed form (parity of Y, then X) keeps the tag short.
	compressed := append([]byte{2 | raw[64]&1}, raw[1:33]...)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(compressed) + "." + enc.EncodeToString(sig), nil
}

// Verify checks a tag for node name, gossiping at addr, against the Node's
// key binding (KeyAnnotation).
func Verify(tag, name, addr, keyHash string) error {
	if tag == "" {
		return errors.New("the member presents no proof of its node key")
	}
	enc := base64.RawURLEncoding
	p, s, ok := strings.Cut(tag, ".")
	point, perr := enc.DecodeString(p)
	sig, serr := enc.DecodeString(s)
	if !ok || perr != nil || serr != nil {
		return errors.New("malformed proof")
	}
	pub, err := decompress(point)
	if err != nil {
		return err
	}
	got, err := KeyHash(pub)
	if err != nil {
		return err
	}
	if got != keyHash {
		return fmt.Errorf("the proof's key (sha256 %.12s) is not the key node %s is bound to (%.12s)", got, name, keyHash)
	}
	digest := message(name, addr)
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		return fmt.Errorf("the proof does not sign node %s at %s", name, addr)
	}
	return nil
}

// decompress parses a compressed P-256 point into a public key.
func decompress(point []byte) (*ecdsa.PublicKey, error) {
	x, y := elliptic.UnmarshalCompressed(elliptic.P256(), point)
	if x == nil {
		return nil, errors.New("malformed public key in the proof")
	}
	raw := make([]byte, 65)
	raw[0] = 4
	x.FillBytes(raw[1:33])
	y.FillBytes(raw[33:])
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return nil, fmt.Errorf("malformed public key in the proof: %w", err)
	}
	return pub, nil
}

// message is what a proof signs; addr is normalised so both sides agree.
func message(name, addr string) [32]byte {
	if host, port, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip != nil {
			addr = net.JoinHostPort(ip.String(), port)
		}
	}
	return sha256.Sum256([]byte(context + name + "\x00" + addr))
}
