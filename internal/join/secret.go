package join

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode"
)

// Token secrets chosen by an operator must resist guessing: the server
// token's secret keys the gossip encryption and unlocks the cluster's CA,
// the agent token's admits nodes. A secret is refused below MinSecretLen
// characters or below MinSecretBits of estimated entropy.
const (
	MinSecretLen  = 16
	MinSecretBits = 48
)

// GenerateHint says how to make a secret that passes CheckSecret.
const GenerateHint = "generate one with `keelson token generate` or `openssl rand -hex 32`"

// GenerateSecret returns a new random secret: 32 bytes as 64 hex digits.
func GenerateSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// CheckSecret refuses a secret that is short, holds spaces or control
// characters, or whose estimated entropy is below MinSecretBits. field names
// the flag or key the secret came from, for the error.
func CheckSecret(secret, field string) error {
	if strings.ContainsFunc(secret, func(r rune) bool { return r <= ' ' || r == 0x7f || r > unicode.MaxASCII }) {
		return fmt.Errorf("%s: the token must be printable ASCII without spaces; %s", field, GenerateHint)
	}
	if len(secret) < MinSecretLen {
		return fmt.Errorf("%s: the token is %d characters, want at least %d random ones; %s", field, len(secret), MinSecretLen, GenerateHint)
	}
	if bits := EstimateBits(secret); bits < MinSecretBits {
		return fmt.Errorf("%s: the token is too guessable (about %.0f bits of entropy, want at least %d); %s", field, bits, MinSecretBits, GenerateHint)
	}
	return nil
}

// EstimateBits estimates a secret's entropy conservatively: its length times
// the smaller of two per-character bounds, the size of the character classes
// it uses (digits, lower case, upper case, punctuation) and the Shannon
// entropy of its character frequencies. Repeats and small alphabets cost,
// so "aaaaaaaaaaaaaaaaaaaa" or "passwordpassword" score low while 16 random
// hex digits score about 55 bits and 64 (a generated secret) about 250.
func EstimateBits(secret string) float64 {
	if secret == "" {
		return 0
	}
	var digit, lower, upper, other bool
	counts := map[rune]int{}
	for _, r := range secret {
		counts[r]++
		switch {
		case r >= '0' && r <= '9':
			digit = true
		case r >= 'a' && r <= 'z':
			lower = true
		case r >= 'A' && r <= 'Z':
			upper = true
		default:
			other = true
		}
	}
	pool := 0
	for _, c := range []struct {
		used bool
		size int
	}{{digit, 10}, {lower, 26}, {upper, 26}, {other, 33}} {
		if c.used {
			pool += c.size
		}
	}
	// A hex string is lower case letters a-f and digits: its alphabet is 16.
	if !upper && !other && !strings.ContainsFunc(secret, func(r rune) bool { return r > 'f' && r <= 'z' }) {
		pool = min(pool, 16)
	}
	n := float64(len(secret))
	shannon := 0.0
	for _, c := range counts {
		p := float64(c) / n
		shannon -= p * math.Log2(p)
	}
	perChar := math.Min(math.Log2(float64(pool)), shannon)
	return n * perChar
}

// SecretHash is how a token secret is stored where others can read it
// (the agent token's hash in the store): hex SHA-256 with a domain prefix.
// Secrets pass CheckSecret or are generated, so an unsalted fast hash does
// not make them guessable.
func SecretHash(secret string) string {
	sum := sha256.Sum256([]byte("keelson agent token v1\x00" + secret))
	return hex.EncodeToString(sum[:])
}

// ErrEmptySecret is returned for a token with no secret.
var ErrEmptySecret = errors.New("empty token secret")
