package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"

	jose "gopkg.in/go-jose/go-jose.v2"
	"gopkg.in/go-jose/go-jose.v2/jwt"
	"k8s.io/client-go/util/keyutil"
)

// legacyIssuer is the issuer of secret-based service-account tokens; the
// API server accepts it besides its --service-account-issuer.
const legacyIssuer = "kubernetes/serviceaccount"

// legacyClaims are the private claims of a secret-based token: the API
// server's legacy validator checks that the named secret still exists and
// holds this very token, and that the service account still has this UID.
type legacyClaims struct {
	ServiceAccountName string `json:"kubernetes.io/serviceaccount/service-account.name"`
	ServiceAccountUID  string `json:"kubernetes.io/serviceaccount/service-account.uid"`
	SecretName         string `json:"kubernetes.io/serviceaccount/secret.name"`
	Namespace          string `json:"kubernetes.io/serviceaccount/namespace"`
}

// signer mints legacy service-account tokens.
type signer struct {
	s jose.Signer
}

// newSigner parses the service-account signing key (PEM: PKCS#8, PKCS#1 or
// SEC 1; RSA or ECDSA P-256/384/521) and returns a signer whose tokens
// carry the key ID the API server derives from the matching public key.
func newSigner(keyPEM []byte) (*signer, error) {
	key, err := keyutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parsing serviceAccountKeyPEM: %w", err)
	}
	var alg jose.SignatureAlgorithm
	var pub crypto.PublicKey
	switch k := key.(type) {
	case *rsa.PrivateKey:
		alg, pub = jose.RS256, &k.PublicKey
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			alg = jose.ES256
		case elliptic.P384():
			alg = jose.ES384
		case elliptic.P521():
			alg = jose.ES512
		default:
			return nil, errors.New("serviceAccountKeyPEM: unsupported elliptic curve; use P-256, P-384 or P-521")
		}
		pub = &k.PublicKey
	default:
		return nil, fmt.Errorf("serviceAccountKeyPEM: unsupported key type %T; use an RSA or ECDSA key", key)
	}
	kid, err := keyID(pub)
	if err != nil {
		return nil, err
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: &jose.JSONWebKey{
		Algorithm: string(alg), Key: key, KeyID: kid, Use: "sig",
	}}, nil)
	if err != nil {
		return nil, fmt.Errorf("serviceAccountKeyPEM: building a JWS signer: %w", err)
	}
	return &signer{s: s}, nil
}

// keyID is the URL-safe base64 of the SHA-256 of the PKIX DER public key,
// which is how the API server names its verification keys.
func keyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("serviceAccountKeyPEM: encoding the public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// token returns a non-expiring token for service account ns/name (uid),
// valid as long as secret ns/secretName holds it.
func (s *signer) token(ns, name, uid, secretName string) (string, error) {
	return jwt.Signed(s.s).
		Claims(legacyClaims{ServiceAccountName: name, ServiceAccountUID: uid, SecretName: secretName, Namespace: ns}).
		Claims(jwt.Claims{Issuer: legacyIssuer, Subject: "system:serviceaccount:" + ns + ":" + name}).
		CompactSerialize()
}
